"""Drop generated instructions too similar (ROUGE-L F1 > threshold) to a seed or to another task.

Policies:
- keep-first (self-instruct, Stanford Alpaca): a task is dropped if it is too similar to a
  seed or to an earlier kept task.
- drop-both-members (AlpaCare's filter compared every instruction with every other one): both
  tasks of a too-similar pair are dropped, and tasks too similar to a seed.

Exact and fast: the decisions are those of scoring every pair with `rouge-score`, but most
pairs are never scored. A pair can only exceed the threshold if its LCS reaches
`rouge.min_lcs(n, m)`, and the LCS is at most the number of tokens the two texts share. So
every text is cut into "elements" (a token and its occurrence number: the 2nd "of" is its own
element), the elements are put in one global order (rarest first), and a text is indexed under
its first len - min_overlap(len) + 1 elements only (prefix filtering, Chaudhuri et al. 2006;
Bayardo et al. 2007): two texts sharing at least k elements must share one of those prefix
elements. Candidates found through the index then pass the length bound, a positional bound
(PPJoin), the shared-token bound and finally the exact bit-parallel LCS. No step ever skips a pair rouge-score would flag.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from functools import lru_cache

from .rouge import NEVER, Tokens, min_lcs, min_overlap, rouge_l

POLICIES = ("keep-first", "drop-both-members")
_POS_BITS = 12
_POS_MASK = (1 << _POS_BITS) - 1
log = logging.getLogger("alpacare")


def _elements(tokens: Tokens) -> list[tuple[str, int]]:
    seen: Counter = Counter()
    out = []
    for token in tokens.tokens:
        seen[token] += 1
        out.append((token, seen[token]))
    return out


class _Ranks:
    """The global element order, as integers (smaller = rarer = earlier in a prefix). Frozen
    from the texts first seen; an element met later gets a new, smaller number (it is rare by
    definition), so no element's rank ever changes: the prefix filter needs one fixed order."""

    def __init__(self, texts: list[Tokens]):
        frequency: Counter = Counter()
        for tok in texts:
            frequency.update(_elements(tok))
        ordered = sorted(frequency, key=lambda e: (frequency[e], e))
        self.rank = {e: r for r, e in enumerate(ordered)}
        self.next_new = -1

    def of(self, tok: Tokens) -> frozenset[int]:
        rank = self.rank
        out = []
        for element in _elements(tok):
            r = rank.get(element)
            if r is None:
                r = rank[element] = self.next_new
                self.next_new -= 1
            out.append(r)
        return frozenset(out)


class _Index:
    """Texts indexed under their prefix elements; ids are positions in `items`."""

    def __init__(self, ranks: _Ranks, threshold: float):
        self.ranks = ranks
        self.threshold = threshold
        self.items: list[Tokens] = []
        self.sets: list[frozenset[int]] = []
        self.lengths: list[int] = []
        self.postings: dict[int, list[int]] = {}

    def _prefix(self, n: int, elements: frozenset[int]) -> list[int]:
        need = min_overlap(n, self.threshold)
        return [] if need == NEVER else sorted(elements)[: n - need + 1]

    def add(self, tok: Tokens, elements: frozenset[int]) -> int:
        ident = len(self.items)
        self.items.append(tok)
        self.sets.append(elements)
        self.lengths.append(len(tok.tokens))
        # each posting carries the element's position in this text's order (capped: a smaller
        # position only loosens the bound below, so capping stays exact)
        for position, element in enumerate(self._prefix(len(tok.tokens), elements)):
            self.postings.setdefault(element, []).append(ident << _POS_BITS | min(position, _POS_MASK))
        return ident

    def matches(self, tok: Tokens, elements: frozenset[int], stats: Counter) -> list[tuple[int, float]]:
        """(id, score) of every indexed text scoring above the threshold with `tok`, by id."""
        n = len(tok.tokens)
        need_for = _need_row(n, self.threshold)
        longest = len(need_for)
        lengths, sets, postings = self.lengths, self.sets, self.postings
        # Positional filter (PPJoin, Xiao et al. 2008): where a text is first met, at position i
        # of the query's order and j of its own, neither has an element of lower rank in common,
        # so they share at most min(n - i, m - j) elements.
        seen: set[int] = set()
        out = []
        for i, element in enumerate(self._prefix(n, elements)):
            hits = postings.get(element)
            if not hits:
                continue
            left = n - i
            for code in hits:
                ident = code >> _POS_BITS
                if ident in seen:
                    continue
                seen.add(ident)
                m = lengths[ident]
                if m >= longest:
                    continue
                need = need_for[m]
                if left < need or m - (code & _POS_MASK) < need:
                    continue
                # the LCS is at most the shared elements (tokens with multiplicity)
                if len(elements.intersection(sets[ident])) >= need:
                    out.append(ident)
        stats["candidates"] += len(seen)
        stats["scored"] += len(out)
        scored = []
        for ident in sorted(out):
            score = rouge_l(self.items[ident], tok)
            if score > self.threshold:
                scored.append((ident, score))
        return scored


@lru_cache(maxsize=None)
def _need_row(n: int, threshold: float) -> tuple[int, ...]:
    """min_lcs(n, m) for m = 0, 1, ... up to the last m any pair can reach."""
    row = [min_lcs(n, m, threshold) for m in range(0, 4 * n + 10)]
    while row and row[-1] == NEVER:
        row.pop()
    return tuple(row)


class Deduper:
    """Incremental dedup: `add` tasks in batches (as generation goes), read `kept()` at any
    time; the result equals one `dedup` call over all tasks added so far.

    The global element order is frozen from the seeds and the first batch (elements seen later
    count as rarest); any fixed order is correct, a frequency order only makes it faster."""

    def __init__(self, seeds: list[dict], threshold: float = 0.7, policy: str = "keep-first", progress_every: int = 5000):
        if policy not in POLICIES:
            raise ValueError(f"unknown dedup policy {policy!r} (known: {', '.join(POLICIES)})")
        self.seeds, self.threshold, self.policy = seeds, threshold, policy
        self.progress_every = progress_every
        self.tasks: list[dict] = []
        self.dropped: dict[int, dict] = {}
        self.pairs: list[tuple[int, int, float]] = []  # drop-both-members: (earlier, later, score)
        self.stats: Counter = Counter()
        self._ranks: _Ranks | None = None
        self._seed_index = self._pool = None
        self._pool_ids: list[int] = []  # task number of each pool entry

    def add(self, tasks: list[dict]) -> None:
        start, first = time.monotonic(), len(self.tasks)
        tokens = [Tokens(t["instruction"]) for t in tasks]
        if self._ranks is None:
            seed_tokens = [Tokens(s["instruction"]) for s in self.seeds]
            self._ranks = _Ranks(seed_tokens + tokens)
            self._seed_index = _Index(self._ranks, self.threshold)
            self._pool = _Index(self._ranks, self.threshold)
            for seed in seed_tokens:
                self._seed_index.add(seed, self._ranks.of(seed))
        for offset, (task, tok) in enumerate(zip(tasks, tokens)):
            i = first + offset
            self.tasks.append(task)
            self._one(i, tok, self._ranks.of(tok))
            done = offset + 1
            if self.progress_every and done % self.progress_every == 0 and done < len(tasks):
                log.info("dedup: %d/%d candidates, %d kept, %d pairs scored, %.1f s",
                         done, len(tasks), self.kept_count(), self.stats["scored"], time.monotonic() - start)
        self.stats["seconds"] += time.monotonic() - start

    def _one(self, i: int, tok: Tokens, elements: frozenset[int]) -> None:
        seed_hits = self._seed_index.matches(tok, elements, self.stats)
        if seed_hits:
            j, score = max(seed_hits, key=lambda h: (h[1], -h[0]))
            self.dropped[i] = {"similar_to": "seed", "text": self.seeds[j]["instruction"], "rouge_l": round(score, 4)}
        if self.policy == "keep-first":
            if i in self.dropped:
                return
            hits = self._pool.matches(tok, elements, self.stats)
            if hits:
                j, score = max(hits, key=lambda h: (h[1], -h[0]))  # the best, the earliest on ties
                self.dropped[i] = {"similar_to": "task", "text": self.tasks[self._pool_ids[j]]["instruction"],
                                   "rouge_l": round(score, 4)}
            else:
                self._pool.add(tok, elements)
                self._pool_ids.append(i)
        else:  # every task meets every earlier one, seed matches included
            for j, score in self._pool.matches(tok, elements, self.stats):
                self.pairs.append((self._pool_ids[j], i, score))
            self._pool.add(tok, elements)
            self._pool_ids.append(i)

    def _dropped_all(self) -> dict[int, dict]:
        dropped = dict(self.dropped)
        # the first pair of each task in (earlier, later) order names what it matched
        for a, b, score in sorted(self.pairs):
            for x, y in ((a, b), (b, a)):
                dropped.setdefault(x, {"similar_to": "task", "text": self.tasks[y]["instruction"], "rouge_l": round(score, 4)})
        return dropped

    def kept_count(self) -> int:
        if self.policy == "keep-first":
            return len(self.tasks) - len(self.dropped)
        members = {x for a, b, _ in self.pairs for x in (a, b)}
        return len(self.tasks) - len(members | set(self.dropped))

    def result(self, limit: int | None = None) -> tuple[list[dict], dict]:
        """(kept tasks, report); `limit` keeps only the first that many survivors."""
        dropped = self._dropped_all()
        kept = [t for i, t in enumerate(self.tasks) if i not in dropped]
        cut = kept[limit:] if limit is not None else []
        kept = kept[:limit] if limit is not None else kept
        reasons = Counter(d["similar_to"] for d in dropped.values())
        report = {
            "policy": self.policy,
            "threshold": self.threshold,
            "candidates": len(self.tasks),
            "kept": len(kept),
            "dropped_similar_to_seed": reasons["seed"],
            "dropped_similar_to_task": reasons["task"],
            "beyond_target": len(cut),
            "pairs_scored": self.stats["scored"],
            "dropped": [{"instruction": self.tasks[i]["instruction"], **why} for i, why in sorted(dropped.items())],
        }
        return kept, report


def dedup(tasks: list[dict], seeds: list[dict], threshold: float = 0.7, policy: str = "keep-first",
          limit: int | None = None):
    """Returns (kept tasks, report). Every dropped task is in the report with the text it
    matched and the score, so the filter can be audited."""
    deduper = Deduper(seeds, threshold, policy)
    deduper.add(tasks)
    return deduper.result(limit)
