"""Texts longer than a model's input: overlapping windows, and how their results combine.

A text of ``n`` tokens is ``prefix + content + suffix`` (the tokenizer's special tokens, e.g.
``[CLS] ... [SEP]``). When it does not fit into ``max_length`` tokens, the content is cut into
windows of ``max_length - len(prefix) - len(suffix)`` tokens that overlap (by default each
starts half a window after the previous one; the last one ends at the end of the text), and
every window gets the prefix and suffix again, so it is a valid model input.

How the results combine (the definition the relevance is conservative for):

* **output**: the text's logits are the mean of the window logits;
* **relevance**: relevance is linear in the explained output, so the relevance of a token for
  the mean output is the *sum of its relevance in every window that contains it, divided by
  the number of windows*. A token seen by two windows therefore collects both shares; its
  relevance is not averaged over the windows that contain it. The special tokens of all
  windows are merged into the text's own prefix/suffix the same way. ``sum(relevance)`` over
  the text equals the mean over windows of the window sums.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of one text lie.

    Attributes
    ----------
    n_tokens : int
        Tokens of the whole text, special tokens included.
    n_prefix, n_suffix : int
        Special tokens before and after the content (repeated in every window).
    spans : tuple of (int, int)
        ``[start, stop)`` of each window's content, as token positions in the whole text.
    """
    n_tokens: int
    n_prefix: int
    n_suffix: int
    spans: tuple[tuple[int, int], ...]

    @property
    def n_windows(self) -> int:
        return len(self.spans)

    @property
    def stride(self) -> int:
        """Tokens between the starts of consecutive windows (0 for one window)."""
        return self.spans[1][0] - self.spans[0][0] if len(self.spans) > 1 else 0

    def window_ids(self, ids: list[int]) -> list[list[int]]:
        """Token ids of every window: prefix + content slice + suffix."""
        prefix, suffix = ids[:self.n_prefix], ids[self.n_tokens - self.n_suffix:]
        return [prefix + ids[a:b] + suffix for a, b in self.spans]

    def combine_relevance(self, window_relevance: list[torch.Tensor]) -> torch.Tensor:
        """Relevance ``(n_tokens,)`` of the text from one ``(window length,)`` tensor per window.

        Sum over the windows containing each token, divided by the number of windows (see the
        module docstring).
        """
        if len(window_relevance) != self.n_windows:
            raise ValueError(f"{len(window_relevance)} relevance vectors for {self.n_windows} "
                             "windows")
        total = torch.zeros(self.n_tokens, dtype=window_relevance[0].dtype)
        tail = slice(self.n_tokens - self.n_suffix, self.n_tokens)
        for (a, b), rel in zip(self.spans, window_relevance):
            rel = rel.detach().cpu()
            total[:self.n_prefix] += rel[:self.n_prefix]
            total[a:b] += rel[self.n_prefix:self.n_prefix + b - a]
            total[tail] += rel[self.n_prefix + b - a:]
        return total / self.n_windows

    def describe(self) -> str:
        """One sentence for the result's notes; empty when the text fits in one window."""
        if self.n_windows == 1:
            return ""
        length = self.spans[0][1] - self.spans[0][0] + self.n_prefix + self.n_suffix
        return (f"long text: {self.n_tokens} tokens explained over {self.n_windows} overlapping "
                f"windows of {length} tokens (stride {self.stride}); the prediction is the mean "
                "of the window logits, and a token's relevance is the sum of its relevance in "
                "every window that contains it divided by the number of windows")


def plan_windows(n_tokens: int, n_prefix: int, n_suffix: int, max_length: int | None,
                 stride: int | None = None) -> WindowPlan:
    """Split a text of ``n_tokens`` tokens into windows of at most ``max_length`` tokens.

    Parameters
    ----------
    n_tokens, n_prefix, n_suffix : int
        Tokens of the text, and its leading/trailing special tokens.
    max_length : int or None
        Tokens per window, special tokens included; ``None``: one window, the whole text.
    stride : int, optional
        Content tokens between window starts; default half the window's content (every token
        away from the ends is seen by two windows). Must be between 1 and the content length.

    Returns
    -------
    WindowPlan
        One window when the text fits; otherwise windows ``[k * stride, k * stride + C)``
        and a last one ending at the text's end, ``C = max_length - n_prefix - n_suffix``.
    """
    content = n_tokens - n_prefix - n_suffix
    if content < 0:
        raise ValueError(f"{n_prefix} + {n_suffix} special tokens in a text of {n_tokens}")
    if max_length is None or n_tokens <= max_length:
        return WindowPlan(n_tokens, n_prefix, n_suffix, ((n_prefix, n_tokens - n_suffix),))
    width = max_length - n_prefix - n_suffix
    if width < 1:
        raise ValueError(f"max_length={max_length} leaves no room for text between "
                         f"{n_prefix + n_suffix} special tokens")
    stride = max(1, width // 2) if stride is None else int(stride)
    if not 1 <= stride <= width:
        raise ValueError(f"stride must be between 1 and {width} (the window's text tokens), "
                         f"got {stride}")
    starts = list(range(0, content - width, stride)) + [content - width]
    spans = tuple((n_prefix + s, n_prefix + s + width) for s in starts)
    return WindowPlan(n_tokens, n_prefix, n_suffix, spans)


def special_ends(token_word: list[int | None]) -> tuple[int, int]:
    """Number of leading and trailing special tokens (those of no word).

    A text without words is all special tokens: they count as prefix.
    """
    n = len(token_word)
    prefix = next((i for i, w in enumerate(token_word) if w is not None), n)
    if prefix == n:
        return n, 0
    suffix = next(i for i, w in enumerate(reversed(token_word)) if w is not None)
    return prefix, suffix
