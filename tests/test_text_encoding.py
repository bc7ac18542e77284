"""Tokenization with word bookkeeping: sub-words, empty, over-long and unknown input."""
import pytest
import torch

from lrp_captum.text.embeddings import load_tokenizer
from lrp_captum.text.encoding import encode_texts, length_batches, pad_batch
from lrp_captum.text.explain import merge_token_relevance


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(max_length=128)


def test_subword_tokens_map_to_the_word_they_come_from(tokenizer):
    (enc,) = encode_texts(tokenizer, ["It was unbelievably good!"])
    assert enc.words == ["It", "was", "unbelievably", "good", "!"]
    assert enc.tokens[3:8] == ["un", "##bel", "##ie", "##va", "##bly"]
    assert enc.token_word == [None, 0, 1, 2, 2, 2, 2, 2, 3, 4, None]


def test_word_spans_cut_the_original_text(tokenizer):
    text = "  Café  NOT   good…"
    (enc,) = encode_texts(tokenizer, [text])
    assert [text[a:b] for a, b in enc.word_spans] == enc.words == ["Café", "NOT", "good", "…"]


def test_merge_sums_subword_relevance_exactly():
    token_rel = [0.5, 0.25, -1.0, 2.0, 0.125, 3.0]
    token_word = [None, 0, 1, 1, 1, None]
    words = merge_token_relevance(token_rel, token_word, 2)
    assert words == [0.25, 1.125]
    assert sum(words) == sum(r for r, w in zip(token_rel, token_word) if w is not None)


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_has_no_words_and_a_warning(tokenizer, text):
    (enc,) = encode_texts(tokenizer, [text])
    assert enc.words == [] and enc.tokens == ["[CLS]", "[SEP]"]
    assert any("empty text" in w for w in enc.warnings)


def test_over_long_text_is_truncated_and_reports_what_was_dropped(tokenizer):
    text = " ".join(["good"] * 300)  # one token per word
    (enc,) = encode_texts(tokenizer, [text], max_length=20)
    assert len(enc.ids) == 20 and enc.truncated
    assert enc.tokens[-1] == "[SEP]"
    assert enc.n_tokens_total == 302
    assert len(enc.words) == 18 and enc.n_words_dropped == 282
    assert any("truncated" in w and "max_length=20" in w for w in enc.warnings)


def test_text_that_fits_is_not_truncated(tokenizer):
    (enc,) = encode_texts(tokenizer, ["short text"], max_length=4)
    assert not enc.truncated and enc.n_words_dropped == 0 and enc.warnings == []


def test_unknown_characters_are_flagged_as_unknown_words(tokenizer):
    (enc,) = encode_texts(tokenizer, ["great 😀 stay ☃"])
    assert enc.words == ["great", "😀", "stay", "☃"]
    assert enc.unknown_words == [1, 3]
    assert enc.tokens.count("[UNK]") == 2
    assert any("unknown characters" in w for w in enc.warnings)


def test_control_characters_are_dropped_without_breaking_offsets(tokenizer):
    text = "good\x00 \x07bad"
    (enc,) = encode_texts(tokenizer, [text])
    assert enc.words == ["good", "bad"]


def test_non_string_input_names_its_position(tokenizer):
    with pytest.raises(TypeError, match="text 1 is NoneType"):
        encode_texts(tokenizer, ["ok", None])


def test_hugging_face_fast_tokenizer_is_accepted(tokenizer):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer)
    (a,), (b,) = encode_texts(hf, ["not bad at all"]), encode_texts(tokenizer, ["not bad at all"])
    assert a.ids == b.ids and a.words == b.words


def test_callers_tokenizer_settings_are_not_changed(tokenizer):
    before = tokenizer.truncation
    encode_texts(tokenizer, ["x " * 400], max_length=10)
    assert tokenizer.truncation == before


def test_pad_batch_pads_right_to_min_length():
    from lrp_captum.text.encoding import EncodedText
    e = EncodedText(text="", ids=[101, 102], tokens=[], token_word=[], words=[], word_spans=[])
    batch = pad_batch([e], pad_id=0, min_length=4)
    assert batch.tolist() == [[101, 102, 0, 0]] and batch.dtype == torch.long


def test_length_batches_group_equal_lengths_and_cover_every_index():
    lengths = [3, 5, 3, 5, 5, 9, 3]
    batches = length_batches(lengths, batch_size=2, shuffle=True,
                             generator=torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert all(len({lengths[i] for i in b}) == 1 and len(b) <= 2 for b in batches)


@pytest.mark.parametrize("text, words", [
    ("I didn't like it.", ["I", "didn't", "like", "it", "."]),
    ("It isn’t bad, we'd go again", ["It", "isn’t", "bad", ",", "we'd", "go", "again"]),
    ("rock'n'roll y'all", ["rock'n'roll", "y'all"]),
])
def test_a_contraction_is_one_word(tokenizer, text, words):
    (enc,) = encode_texts(tokenizer, [text])
    assert enc.words == words
    assert [text[a:b] for a, b in enc.word_spans] == words
    assert [t for t, w in zip(enc.tokens, enc.token_word) if w == 1] == \
        tokenizer.encode(words[1], add_special_tokens=False).tokens


@pytest.mark.parametrize("text, words", [
    ("'quoted' words", ["'", "quoted", "'", "words"]),
    ("the students' rooms", ["the", "students", "'", "rooms"]),
    ("it ' s", ["it", "'", "s"]),
])
def test_quotes_and_apostrophes_outside_a_word_stay_apart(tokenizer, text, words):
    (enc,) = encode_texts(tokenizer, [text])
    assert enc.words == words


def test_roberta_style_byte_level_tokenizer_keeps_contractions_whole():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    # byte-level pre-tokenizer as in GPT-2/RoBERTa: splits "didn't" into "didn" + "'t"
    vocab = {c: i for i, c in enumerate(sorted(set("ĠIdintlke'.")))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    (enc,) = encode_texts(tok, ["I didn't like it."])
    assert enc.words == ["I", "didn't", "like", "it", "."]


def test_without_max_length_nothing_is_truncated(tokenizer):
    (enc,) = encode_texts(tokenizer, ["good " * 600])
    assert len(enc.ids) == 602 and not enc.truncated and len(enc.words) == 600
