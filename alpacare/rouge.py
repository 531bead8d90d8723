"""ROUGE-L F1 exactly as the `rouge-score` package computes it (default tokenizer, no
stemmer), and the exact bounds that let the dedup filter skip pairs without scoring them.

Exactness: `rouge_l` evaluates the same floating-point expression as rouge-score
(p = lcs/len(b), r = lcs/len(a), 2*p*r/(p+r)), so its result is bit-identical, and
`min_lcs(n, m, t)` finds the smallest LCS length whose *floating-point* F1 exceeds t by
evaluating that same expression, never a rearranged one. A 7-token subsequence of a 13-token
text scores 0.7000000000000001 in rouge-score, above 0.7, although 2*7/20 is exactly 0.7 on
paper; a bound computed as 2*l/(n+m) would skip that pair, this one does not.

Speed: each text is tokenized once, and the LCS length is computed bit-parallel (Hyyrö
2004) on Python integers.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """rouge-score's default tokenizer: lowercase, non-alphanumerics become spaces."""
    return [t for t in _NON_ALNUM.sub(" ", text.lower()).split() if t]


class Tokens:
    """A tokenized text with what the LCS and the bounds need: per-token bitmasks and counts."""

    __slots__ = ("tokens", "masks", "full", "counts")

    def __init__(self, text: str):
        self.tokens = tokenize(text)
        masks: dict[str, int] = {}
        for i, token in enumerate(self.tokens):
            masks[token] = masks.get(token, 0) | (1 << i)
        self.masks = masks
        self.full = (1 << len(self.tokens)) - 1
        self.counts = Counter(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)


def lcs_length(a: Tokens, b: Tokens) -> int:
    v = a.full
    masks = a.masks
    for token in b.tokens:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & a.full
    return len(a.tokens) - bin(v).count("1")


def f_measure(lcs: int, n: int, m: int) -> float:
    """rouge-score's F1 for an LCS of `lcs` tokens between texts of n (target) and m
    (prediction) tokens, with its exact floating-point operations."""
    if not n or not m or not lcs:
        return 0.0
    precision, recall = lcs / m, lcs / n
    return 2 * precision * recall / (precision + recall)


def rouge_l(a: Tokens, b: Tokens) -> float:
    """F1 of ROUGE-L between two tokenized texts (symmetric)."""
    if not a.tokens or not b.tokens:
        return 0.0
    return f_measure(lcs_length(a, b), len(a.tokens), len(b.tokens))


NEVER = 1 << 30  # an LCS length no pair reaches


@lru_cache(maxsize=None)
def min_lcs(n: int, m: int, threshold: float) -> int:
    """The smallest LCS length l for which texts of n and m tokens score F1 > threshold, or
    NEVER. Found by evaluating rouge-score's expression, so no pair it would flag is skipped."""
    top = min(n, m)
    if top == 0:
        return NEVER
    # On paper F1 = 2l/(n+m); start a little below that point and step up in floating point.
    start = max(1, int(threshold * (n + m) / 2) - 2)
    for lcs in range(start, top + 1):
        if f_measure(lcs, n, m) > threshold:
            # the paper bound is monotone, but check that nothing below `start` qualifies
            assert start == 1 or f_measure(start - 1, n, m) <= threshold
            return lcs
    return NEVER


@lru_cache(maxsize=None)
def min_overlap(n: int, threshold: float) -> int:
    """The smallest LCS length a text of n tokens needs with a partner of ANY length to score
    above threshold (NEVER if none can): it sets how long the text's prefix must be."""
    best = NEVER
    m = 1
    # min_lcs(n, m) grows with m once m >= n; stop when even the paper bound exceeds the best
    while threshold * (n + m) / 2 - 2 <= best and m <= 4 * n + 8:
        best = min(best, min_lcs(n, m, threshold))
        m += 1
    return best


def overlap(a: Tokens, b: Tokens) -> int:
    """Tokens the two texts share, with multiplicity: an upper bound on their LCS length."""
    small, large = (a.counts, b.counts) if len(a.counts) <= len(b.counts) else (b.counts, a.counts)
    return sum(min(c, large[t]) for t, c in small.items() if t in large)
