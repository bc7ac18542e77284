"""The VADER-derived sentiment data set and the offline MiniLM resources."""
import torch

from lrp_captum.demos.text_sentences import (CLASS_NAMES, INTENSIFIERS, NEGATIONS, load_vader_lexicon,
                                             make_sentiment_dataset, rated_context_words, sentiment_words,
                                             split_examples)
from lrp_captum.text.embeddings import load_tokenizer, load_word_embeddings


def _tokenizer():
    return load_tokenizer()


def test_embedding_table_is_minilm_word_embeddings_30522_by_384():
    table = load_word_embeddings()
    assert table.shape == (30522, 384) and table.dtype == torch.float32
    assert not table.requires_grad
    # a fresh copy each call: editing one does not change the next
    table[0] = 1.0
    assert not torch.equal(load_word_embeddings()[0], table[0])


def test_tokenizer_is_uncased_wordpiece_with_cls_and_sep():
    enc = _tokenizer().encode("Unbelievably GOOD")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"
    assert enc.tokens[1:-1] == ["un", "##bel", "##ie", "##va", "##bly", "good"]


def test_rated_words_take_their_sign_from_the_vader_lexicon():
    lexicon = load_vader_lexicon()
    words = sentiment_words(_tokenizer().get_vocab())
    assert len(words) > 100
    for word, rating in words.items():
        assert rating == lexicon[word][0] and abs(rating) >= 1.2
    assert {"good", "great", "bad", "terrible"} <= set(words)
    assert words["good"] > 0 > words["terrible"]


def test_context_negation_and_intensifier_words_are_unrated_in_vader():
    assert rated_context_words() == []


def test_every_rated_word_is_a_single_wordpiece():
    vocab = _tokenizer().get_vocab()
    assert all(w in vocab for w in sentiment_words(vocab))


def test_labels_are_word_polarity_flipped_by_a_direct_negation():
    lexicon = load_vader_lexicon()
    for ex in make_sentiment_dataset(600, seed=3):
        words = ex.text.split(" ")
        word = words[ex.sentiment_index]
        positive = lexicon[word][0] > 0
        negated = any(words[i] in NEGATIONS for i in range(ex.sentiment_index - 2,
                                                           ex.sentiment_index)
                      if i >= 0 and (i == ex.sentiment_index - 1 or
                                     words[i + 1] in INTENSIFIERS))
        assert negated == ex.negated
        assert ex.label == int(positive != negated), ex.text


def test_evidence_is_the_rated_word_plus_the_flipping_negation():
    for ex in make_sentiment_dataset(300, seed=4):
        words = ex.text.split(" ")
        expected = {ex.sentiment_index} | ({ex.negation_index} if ex.negated else set())
        assert set(ex.evidence) == expected
        if ex.negated:
            assert words[ex.negation_index] in NEGATIONS


def test_presence_of_a_negation_word_does_not_decide_the_label():
    # a bag of words sees "not"/"never" in flipped and in unflipped sentences alike
    examples = make_sentiment_dataset(2000, seed=0)
    with_negation = [e for e in examples if set(e.text.split()) & set(NEGATIONS)]
    flipped = sum(e.negated for e in with_negation)
    assert 0.3 < flipped / len(with_negation) < 0.9
    assert any(e.distractor_negation_index is not None and not e.negated for e in examples)


def test_dataset_is_balanced_distinct_and_reproducible():
    a = make_sentiment_dataset(1000, seed=7)
    b = make_sentiment_dataset(1000, seed=7)
    assert [e.text for e in a] == [e.text for e in b]
    assert len({e.text for e in a}) == 1000
    assert sum(e.label for e in a) == 500
    assert CLASS_NAMES == ("negative", "positive")


def test_split_has_no_sentence_in_both_parts():
    train, test = split_examples(make_sentiment_dataset(500, seed=1), test_fraction=0.2)
    assert len(test) == 100 and len(train) == 400
    assert not {e.text for e in train} & {e.text for e in test}


def test_wordpiece_words_align_with_the_recorded_word_indices():
    tokenizer = _tokenizer()
    for ex in make_sentiment_dataset(200, seed=2, vocab=tokenizer.get_vocab()):
        enc = tokenizer.encode(ex.text)
        word_ids = [w for w in enc.word_ids if w is not None]
        assert sorted(set(word_ids)) == list(range(len(ex.text.split(" "))))
        # the rated word is exactly one token
        assert word_ids.count(ex.sentiment_index) == 1
