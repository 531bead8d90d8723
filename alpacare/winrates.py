"""The arithmetic over verdicts: win rates with their uncertainty, position bias, and a
length-controlled win rate. Kept apart from the judge's prompt (alpacare.judge) so that an
edit here reruns only the report, never a judge.

An item's score is the mean of its two orders' scores (win 1, tie 0.5, loss 0); an item
counts only when both orders gave a verdict, as in AlpaCare's evaluation. Invalid judgments
(no verdict after the re-asks, or a failed call) are counted and reported, never dropped
silently. All rates are percentages."""

from __future__ import annotations

import hashlib
import math

import numpy as np

ORDERS = ("reference_first", "model_first")
BOOTSTRAP_RESAMPLES = 2000
LC_RIDGE = 0.01  # a weak L2 penalty: all-win or all-loss data still give a finite fit


def item_scores(rows: list[dict]) -> dict:
    """item id -> {order: model_score or None}."""
    by_item: dict = {}
    for row in rows:
        by_item.setdefault(row["id"], {})[row["order"]] = row.get("model_score")
    return by_item


def stable_seed(*parts) -> int:
    """A bootstrap seed from what is summarized (never from its place in a list)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def summarize(rows: list[dict], lengths: dict | None = None, seed: int = 0) -> dict:
    """Every number the results tables show for one (judge, reference, test set, model).

    lengths: item id -> (model output length, reference output length) in characters, for
    the length-controlled win rate (omitted: it is not computed)."""
    by_item = item_scores(rows)
    scored = {i: sum(o[k] for k in ORDERS) / 2 for i, o in by_item.items()
              if all(o.get(k) is not None for k in ORDERS)}
    scores = np.array(list(scored.values()), dtype=float)
    valid = [r for r in rows if r.get("model_score") is not None]
    result = {
        "items": len(by_item),
        "scored_items": len(scored),
        "invalid": sum(r.get("model_score") is None for r in rows),
        "failed": sum(bool(r.get("error")) for r in rows),
        **mean_and_interval(scores, seed),
        "lc_win_rate": math.nan,
        "tie_rate": _pct(sum(r["model_score"] == 0.5 and r.get("preference") == "tie" for r in valid), len(valid)),
        "flip_rate": _pct(sum(by_item[i]["reference_first"] != by_item[i]["model_first"] for i in scored), len(scored)),
    }
    for order in ORDERS:
        mine = [r["model_score"] for r in valid if r["order"] == order]
        result[f"win_rate_{order}"] = round(100 * sum(mine) / len(mine), 2) if mine else math.nan
    if lengths is not None and len(scored) >= 2:
        ids = list(scored)
        diff = np.array([lengths[i][0] - lengths[i][1] for i in ids], dtype=float)
        result["lc_win_rate"] = round(100 * length_controlled(scores, diff), 2)
    return result


def mean_and_interval(scores: np.ndarray, seed: int) -> dict:
    """Win rate, its standard error, and a percentile bootstrap 95 % interval over items."""
    n = len(scores)
    if n == 0:
        return {"win_rate": math.nan, "se": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    se = float(scores.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"win_rate": round(100 * float(scores.mean()), 2), "se": round(100 * se, 2),
            "ci_low": round(100 * float(low), 2), "ci_high": round(100 * float(high), 2)}


def length_controlled(scores: np.ndarray, length_diff: np.ndarray) -> float:
    """The win probability at equal length, in the manner of alpaca_eval 2.0.

    A logistic regression of the item score y (0, 0.25, ..., 1, taken as a soft label) on
    x = tanh(d / sd(d)), where d is the model's output length minus the reference's in
    characters and sd its standard deviation over the items:
        P(model wins) = sigmoid(b0 + b1 * x),
    fitted by Newton's method on the cross-entropy plus LC_RIDGE/2 * (b0^2 + b1^2). The
    length-controlled win rate is sigmoid(b0), the prediction for d = 0. (alpaca_eval 2.0 fits
    one such model per system with an extra instruction-difficulty term shared across
    systems; with one model against one reference per fit, that term has nothing to share.)"""
    sd = length_diff.std()
    x = np.tanh(length_diff / sd) if sd > 0 else np.zeros_like(length_diff)
    features = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(features @ beta)))
        gradient = features.T @ (p - scores) + LC_RIDGE * beta
        hessian = features.T @ (features * (p * (1 - p))[:, None]) + LC_RIDGE * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(1 / (1 + math.exp(-beta[0])))


def by_difficulty(rows: list[dict], difficulty: dict, seed: int = 0) -> list[dict]:
    """Win rates per difficulty level (MedInstruct-test: 1-5); difficulty: item id -> level."""
    levels = sorted({difficulty[r["id"]] for r in rows if r["id"] in difficulty})
    out = []
    for level in levels:
        mine = [r for r in rows if difficulty.get(r["id"]) == level]
        s = summarize(mine, seed=seed + level)
        out.append({"difficulty": level, "items": s["items"], "scored_items": s["scored_items"], "invalid": s["invalid"],
                    **{k: s[k] for k in ("win_rate", "se", "ci_low", "ci_high")}})
    return out


def _pct(count: int, total: int) -> float:
    return round(100 * count / total, 2) if total else math.nan
