"""Turn raw texts into padded token-id batches that remember words, offsets and truncation."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EncodedText:
    """One text after WordPiece tokenization.

    Attributes
    ----------
    text : str
        The input, unchanged.
    ids, tokens : list
        Token ids and strings, special tokens included, after truncation.
    token_word : list of int or None
        For each token the index of its word, ``None`` for special tokens.
    words : list of str
        Words as they appear in ``text``: what the tokenizer's pre-tokenizer splits off
        (whitespace-separated runs, with punctuation as words of its own), except that a
        contraction or elision stays one word ("didn't", "we'd", "rock'n'roll"): letters or
        digits joined by an apostrophe (' or ’) with nothing in between.
    word_spans : list of (int, int)
        Character ``[start, end)`` of each word in ``text``.
    unknown_words : list of int
        Words that contain characters the vocabulary cannot represent (``[UNK]`` tokens).
    truncated : bool
        True if tokens were cut to fit ``max_length`` (only when one was given).
    n_tokens_total : int
        Tokens before truncation (special tokens included).
    n_words_dropped : int
        Words lost entirely to truncation (a word cut in the middle counts as kept).
    warnings : list of str
        Human-readable notes about empty input, truncation and unknown characters.
    """
    text: str
    ids: list[int]
    tokens: list[str]
    token_word: list[int | None]
    words: list[str]
    word_spans: list[tuple[int, int]]
    unknown_words: list[int] = field(default_factory=list)
    truncated: bool = False
    n_tokens_total: int = 0
    n_words_dropped: int = 0
    warnings: list[str] = field(default_factory=list)


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (a lone surrogate, which no UTF-8 text can hold, with its
    position), or ``None`` when it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start + 1} "
                "(not a character; usually half of an emoji split in two)")
    return None


def backend_tokenizer(tokenizer):
    """The ``tokenizers.Tokenizer`` behind ``tokenizer`` (itself, or a Hugging Face fast
    tokenizer's ``backend_tokenizer``), copied so that its settings can be changed safely."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if not isinstance(backend, Tokenizer):
        raise TypeError(
            f"tokenizer must be a tokenizers.Tokenizer or a Hugging Face fast tokenizer, got "
            f"{type(tokenizer).__name__}; word offsets are needed to merge sub-tokens into words")
    return Tokenizer.from_str(backend.to_str())


def _unk_id(backend) -> int | None:
    model = backend.model
    unk = getattr(model, "unk_token", None)
    return backend.token_to_id(unk) if unk else None


_APOSTROPHES = ("'", "\u2019")


def _is_word_text(piece: str) -> bool:
    return piece.isalnum()


def _contraction_groups(text: str, spans: list[tuple[int, int]]) -> list[int]:
    """Group index of each pre-tokenizer word, joining ``alnum ' alnum`` runs into one word.

    ``spans`` are the character ``[start, end)`` of consecutive words. An apostrophe joins its
    neighbours only when it touches a word character on both sides (so quotes and a plural
    possessive "students'" stay apart). Byte-level tokenizers split "didn't" as "didn" + "'t",
    BERT's as "didn" + "'" + "t"; both become one word.
    """
    groups, group = [], -1
    for i, (start, end) in enumerate(spans):
        piece = text[start:end]
        joins = False
        if i > 0 and spans[i - 1][1] == start:
            prev = text[spans[i - 1][0]:spans[i - 1][1]]
            after = text[end:end + 1]
            if piece in _APOSTROPHES:
                # "didn" + "'" joins only if a word character follows right after
                joins = _is_word_text(prev[-1:]) and _is_word_text(after)
            elif prev in _APOSTROPHES:
                # "'" + "t" joins if the apostrophe itself joined the word before it
                joins = groups[-1] == groups[-2] if len(groups) > 1 else False
                joins = joins and _is_word_text(piece[:1])
            elif piece[:1] in _APOSTROPHES and len(piece) > 1:
                joins = _is_word_text(prev[-1:]) and _is_word_text(piece[1:2])
        group = group if joins else group + 1
        groups.append(group)
    return groups


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` without surrounding whitespace (byte-level offsets include the space)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def encode_texts(tokenizer, texts: list[str], max_length: int | None = None
                 ) -> list[EncodedText]:
    """Tokenize texts with word bookkeeping.

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer or transformers.PreTrainedTokenizerFast
    texts : list of str
    max_length : int, optional
        Tokens per text at most, special tokens included; longer texts are truncated and
        say so. ``None`` (the default) keeps every token: :func:`lrp_captum.text.explain_text`
        explains long texts over overlapping windows instead of cutting them.

    Returns
    -------
    list of EncodedText
    """
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is {type(text).__name__}, expected str")
        problem = unicode_problem(text)
        if problem:
            raise ValueError(f"text {i} is not valid Unicode: {problem}")
    if max_length is not None and max_length < 3:
        raise ValueError(f"max_length must be >= 3 (room for special tokens), got {max_length}")
    backend = backend_tokenizer(tokenizer)
    backend.no_padding()
    backend.no_truncation()
    unk_id = _unk_id(backend)
    full = backend.encode_batch(list(texts))
    if max_length is not None:
        backend.enable_truncation(max_length=int(max_length))
    out = []
    for text, enc_full in zip(texts, full):
        enc = enc_full
        truncated = max_length is not None and len(enc_full.ids) > max_length
        if truncated:
            enc = backend.encode(text)
        words_full = _words_of(text, enc_full)
        token_word, word_spans, unknown = _words_of(text, enc, unk_id)
        words = [text[a:b] for a, b in word_spans]
        n_words_full = len(words_full[1])
        item = EncodedText(text=text, ids=list(enc.ids), tokens=list(enc.tokens),
                           token_word=token_word, words=words, word_spans=word_spans,
                           unknown_words=unknown, truncated=truncated,
                           n_tokens_total=len(enc_full.ids),
                           n_words_dropped=n_words_full - len(words))
        if not words:
            item.warnings.append("empty text: no words to explain (relevance is reported for "
                                 "the special tokens only)")
        if truncated:
            item.warnings.append(
                f"truncated: {len(enc_full.ids)} tokens exceed max_length={max_length}; "
                f"{item.n_words_dropped} word(s) after character {word_spans[-1][1] if words else 0} "
                "were not explained")
        if item.unknown_words:
            shown = ", ".join(repr(words[i]) for i in item.unknown_words[:5])
            item.warnings.append(f"unknown characters: {len(item.unknown_words)} word(s) map to "
                                 f"the unknown token ({shown})")
        out.append(item)
    return out


def _words_of(text: str, enc, unk_id: int | None = None):
    """Word of every token, word spans and unknown words of one ``tokenizers.Encoding``.

    Returns ``(token_word, word_spans, unknown_words)``: words numbered ``0..W-1`` in order of
    appearance (pre-tokenizer words, contractions joined), ``None`` for special tokens.
    """
    token_word = [None if s else w for w, s in zip(enc.word_ids, enc.special_tokens_mask)]
    spans: dict[int, list[int]] = {}
    for w, (start, end) in zip(token_word, enc.offsets):
        if w is None:
            continue
        span = spans.setdefault(w, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    order = sorted(spans)  # word ids may skip after truncation
    stripped = [_strip_span(text, *spans[w]) for w in order]
    groups = _contraction_groups(text, stripped)
    index = {w: g for w, g in zip(order, groups)}
    word_spans: list[tuple[int, int]] = []
    for (start, end), g in zip(stripped, groups):
        if g == len(word_spans):
            word_spans.append((start, end))
        else:
            word_spans[g] = (word_spans[g][0], end)
    token_word = [None if w is None else index[w] for w in token_word]
    unknown = sorted({w for tid, w in zip(enc.ids, token_word)
                      if w is not None and unk_id is not None and tid == unk_id})
    return token_word, word_spans, unknown


def pad_batch(encoded: list[EncodedText], pad_id: int, min_length: int = 1,
              device=None) -> torch.Tensor:
    """Stack token ids right-padded with ``pad_id`` to ``(N, max(L_max, min_length))``."""
    length = max([min_length] + [len(e.ids) for e in encoded])
    batch = torch.full((len(encoded), length), int(pad_id), dtype=torch.long)
    for i, e in enumerate(encoded):
        batch[i, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
    return batch.to(device) if device is not None else batch


def length_batches(lengths: list[int], batch_size: int, shuffle: bool = False,
                   generator=None) -> list[list[int]]:
    """Indices grouped into batches of equal ``lengths`` (no padding inside a batch).

    Parameters
    ----------
    lengths : list of int
        Token count of each item.
    batch_size : int
        Items per batch at most.
    shuffle : bool
        Shuffle items within each length and the order of batches (``generator`` seeds it).

    Returns
    -------
    list of list of int
        Every index exactly once.
    """
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(int(n), []).append(i)
    batches = []
    for n in sorted(groups):
        idx = groups[n]
        if shuffle:
            idx = [idx[j] for j in torch.randperm(len(idx), generator=generator).tolist()]
        batches += [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    if shuffle:
        batches = [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]
    return batches
