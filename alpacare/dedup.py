"""Drop generated instructions too similar (ROUGE-L F1 > threshold) to a seed or to another task.

Policies:
- keep-first (self-instruct, Stanford Alpaca): a task is dropped if it is too similar to a
  seed or to an earlier kept task.
- drop-both-members (AlpaCare's filter compared every instruction with every other one): both
  tasks of a too-similar pair are dropped, and tasks too similar to a seed.
"""

from __future__ import annotations

from .rouge import Tokens, most_similar, rouge_l, could_exceed

POLICIES = ("keep-first", "drop-both-members")


def dedup(tasks: list[dict], seeds: list[dict], threshold: float = 0.7, policy: str = "keep-first"):
    """Returns (kept tasks, report). Every dropped task is in the report with the text it
    matched and the score, so the filter can be audited."""
    if policy not in POLICIES:
        raise ValueError(f"unknown dedup policy {policy!r} (known: {', '.join(POLICIES)})")
    seed_tokens = [Tokens(s["instruction"]) for s in seeds]
    task_tokens = [Tokens(t["instruction"]) for t in tasks]
    dropped: dict[int, dict] = {}

    for i, tok in enumerate(task_tokens):
        score, j = most_similar(tok, seed_tokens, threshold)
        if j >= 0:
            dropped[i] = {"similar_to": "seed", "text": seeds[j]["instruction"], "rouge_l": round(score, 4)}

    if policy == "keep-first":
        kept_tokens: list[Tokens] = []
        kept_index: list[int] = []
        for i, tok in enumerate(task_tokens):
            if i in dropped:
                continue
            score, j = most_similar(tok, kept_tokens, threshold)
            if j >= 0:
                dropped[i] = {"similar_to": "task", "text": tasks[kept_index[j]]["instruction"], "rouge_l": round(score, 4)}
            else:
                kept_tokens.append(tok)
                kept_index.append(i)
    else:
        for i in range(len(tasks)):
            for j in range(i + 1, len(tasks)):
                a, b = task_tokens[i], task_tokens[j]
                if could_exceed(a, b, threshold) and (score := rouge_l(a, b)) > threshold:
                    for x, y in ((i, j), (j, i)):
                        dropped.setdefault(x, {"similar_to": "task", "text": tasks[y]["instruction"], "rouge_l": round(score, 4)})

    kept = [t for i, t in enumerate(tasks) if i not in dropped]
    report = {
        "policy": policy,
        "threshold": threshold,
        "candidates": len(tasks),
        "kept": len(kept),
        "dropped": [{"instruction": tasks[i]["instruction"], **why} for i, why in sorted(dropped.items())],
    }
    return kept, report
