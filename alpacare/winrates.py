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
# When the length-controlled win rate is estimable: a two-parameter fit read at equal length
# needs enough items, and items on both sides of equal length, or it extrapolates to a
# length difference the data never had (12 items with the model always shorter gave 0.20
# beside a raw 58.33).
LC_MIN_ITEMS = 30
LC_MIN_SIDE_SHARE = 0.10  # of the scored items, at least this share with the model longer, and with it shorter


def item_scores(rows: list[dict]) -> dict:
    """item id -> {order: model_score or None}."""
    by_item: dict = {}
    for row in rows:
        by_item.setdefault(row["id"], {})[row["order"]] = row.get("model_score")
    return by_item


def order_score(row: dict):
    """The model's score by this order's verdict alone. A log-prob judge's rows carry it
    beside the verdict its margin, averaged over both orders, gives (alpacare.judge); for a
    reply judge the two are the same."""
    return row.get("order_model_score", row.get("model_score"))


def stable_seed(*parts) -> int:
    """A bootstrap seed from what is summarized (never from its place in a list)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def scored_items(rows: list[dict]) -> dict:
    """item id -> the model's score averaged over both orders, for the items both orders scored."""
    return {i: sum(o[k] for k in ORDERS) / 2 for i, o in item_scores(rows).items()
            if all(o.get(k) is not None for k in ORDERS)}


def summarize(rows: list[dict], lengths: dict | None = None, seed: int = 0) -> dict:
    """Every number the results tables show for one (judge, reference, test set, model).

    lengths: item id -> (model output length, reference output length) in characters, for
    the length-controlled win rate (omitted: it is not computed)."""
    by_item = item_scores(rows)
    scored = scored_items(rows)
    scores = np.array(list(scored.values()), dtype=float)
    valid = [r for r in rows if r.get("model_score") is not None]
    by_order = {}
    for row in rows:
        by_order.setdefault(row["id"], {})[row["order"]] = order_score(row)
    result = {
        "items": len(by_item),
        "scored_items": len(scored),
        "invalid": sum(r.get("model_score") is None for r in rows),
        "failed": sum(bool(r.get("error")) for r in rows),
        **mean_and_interval(scores, seed),
        "tie_rate": _pct(sum(r["model_score"] == 0.5 and r.get("preference") == "tie" for r in valid), len(valid)),
        # measured on what each order said by itself: a log-prob judge's debiased verdict agrees by construction
        "flip_rate": _pct(sum(by_order[i]["reference_first"] != by_order[i]["model_first"] for i in scored), len(scored)),
        **answered_by(rows),
    }
    for order in ORDERS:
        mine = [order_score(r) for r in valid if r["order"] == order and order_score(r) is not None]
        result[f"win_rate_{order}"] = round(100 * sum(mine) / len(mine), 2) if mine else math.nan
    if lengths is None:
        result.update(lc_win_rate=math.nan, lc_se=math.nan, lc_ci_low=math.nan, lc_ci_high=math.nan,
                      lc_note="output lengths not given")
    else:
        ids = [i for i in scored if i in lengths]
        diff = np.array([lengths[i][0] - lengths[i][1] for i in ids], dtype=float)
        result.update(length_controlled_estimate(np.array([scored[i] for i in ids], dtype=float), diff, seed))
    return result


def answered_by(rows: list[dict]) -> dict:
    """Which model(s) answered for the judge (the rows' `judge_model`): `judge_models`, in order
    of first appearance, and `judge_model`, them joined for a table; several when a substitute
    changed within the cell, which the table then says rather than pick one."""
    models = list(dict.fromkeys(r["judge_model"] for r in rows if r.get("judge_model")))
    text = (" + ".join(models) + (" (several answered)" if len(models) > 1 else "")) if models else "not recorded"
    return {"judge_models": models, "judge_model": text}


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


def lc_estimable(length_diff: np.ndarray) -> str:
    """'' when the length-controlled win rate can be read off the data, else why not: at least
    LC_MIN_ITEMS scored items, and at least LC_MIN_SIDE_SHARE of them with the model's output
    longer than the reference's and as many with it shorter, items of equal length counting
    for both sides (otherwise equal length lies outside the data and the fit's intercept is an
    extrapolation)."""
    n = len(length_diff)
    if n < LC_MIN_ITEMS:
        return f"{n} scored item(s), fewer than {LC_MIN_ITEMS}"
    need = math.ceil(LC_MIN_SIDE_SHARE * n)
    equal = int((length_diff == 0).sum())
    longer, shorter = int((length_diff > 0).sum()) + equal, int((length_diff < 0).sum()) + equal
    if min(longer, shorter) < need:
        side, count = ("shorter", shorter) if shorter < longer else ("longer", longer)
        return (f"the model's output is {side} (or as long) on only {count} of {n} items "
                f"(each side of equal length needs {need}: {LC_MIN_SIDE_SHARE:.0%})")
    return ""


def length_controlled_estimate(scores: np.ndarray, length_diff: np.ndarray, seed: int = 0) -> dict:
    """The length-controlled win rate (%) with its bootstrap standard error and 95 % interval
    (items resampled, the whole fit redone), or NaNs and the reason it is not estimable."""
    note = lc_estimable(length_diff)
    if note:
        return {"lc_win_rate": math.nan, "lc_se": math.nan, "lc_ci_low": math.nan, "lc_ci_high": math.nan,
                "lc_note": note}
    n = len(scores)
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the win rate's interval stays as it was
    pick = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    boot = _fit_at_equal_length(scores[pick], length_diff[pick])
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"lc_win_rate": round(100 * length_controlled(scores, length_diff), 2),
            "lc_se": round(100 * float(boot.std(ddof=1)), 2),
            "lc_ci_low": round(100 * float(low), 2), "lc_ci_high": round(100 * float(high), 2), "lc_note": ""}


def length_controlled(scores: np.ndarray, length_diff: np.ndarray) -> float:
    """The win probability at equal length, in the manner of alpaca_eval 2.0.

    A logistic regression of the item score y (0, 0.25, ..., 1, taken as a soft label) on
    x = tanh(d / sd(d)), where d is the model's output length minus the reference's in
    characters and sd its standard deviation over the items:
        P(model wins) = sigmoid(b0 + b1 * x),
    fitted by Newton's method on the cross-entropy plus LC_RIDGE/2 * (b0^2 + b1^2). The
    length-controlled win rate is sigmoid(b0), the prediction for d = 0. (alpaca_eval 2.0 fits
    one such model per system with an extra instruction-difficulty term shared across
    systems; with one model against one reference per fit, that term has nothing to share.)
    Whether the data allow reading it at d = 0 is lc_estimable's question."""
    return float(_fit_at_equal_length(np.asarray(scores, dtype=float)[None], np.asarray(length_diff, dtype=float)[None])[0])


def _fit_at_equal_length(y: np.ndarray, d: np.ndarray) -> np.ndarray:
    """length_controlled for each row of y and d (shape: fits x items) at once: the 2x2
    Newton system is solved in closed form, so a bootstrap's 2,000 refits cost one fit's time."""
    sd = d.std(axis=1, keepdims=True)
    x = np.where(sd > 0, np.tanh(d / np.where(sd > 0, sd, 1.0)), 0.0)
    b0, b1 = np.zeros(len(y)), np.zeros(len(y))
    for _ in range(100):
        p = 1 / (1 + np.exp(-(b0[:, None] + b1[:, None] * x)))
        r, w = p - y, p * (1 - p)
        g0, g1 = r.sum(1) + LC_RIDGE * b0, (r * x).sum(1) + LC_RIDGE * b1
        h00, h01, h11 = w.sum(1) + LC_RIDGE, (w * x).sum(1), (w * x * x).sum(1) + LC_RIDGE
        det = h00 * h11 - h01 * h01
        s0, s1 = (h11 * g0 - h01 * g1) / det, (h00 * g1 - h01 * g0) / det
        b0, b1 = b0 - s0, b1 - s1
        if max(np.abs(s0).max(), np.abs(s1).max()) < 1e-10:
            break
    return 1 / (1 + np.exp(-b0))


def outcome(score: float) -> str:
    """An item's outcome for the model: win (score above 0.5), tie (0.5) or loss."""
    return "win" if score > 0.5 else "tie" if score == 0.5 else "loss"


def agreement(first: dict, second: dict) -> dict:
    """How two judges agree on the items both scored (item id -> score averaged over orders):
    the share of identical item scores (%), and Cohen's kappa on win / tie / loss."""
    common = [i for i in first if i in second]
    n = len(common)
    if n == 0:
        return {"items": 0, "identical": math.nan, "kappa": math.nan}
    a, b = [outcome(first[i]) for i in common], [outcome(second[i]) for i in common]
    observed = sum(x == y for x, y in zip(a, b)) / n
    expected = sum((a.count(c) / n) * (b.count(c) / n) for c in ("win", "tie", "loss"))
    kappa = (observed - expected) / (1 - expected) if expected < 1 else math.nan
    return {"items": n, "identical": _pct(sum(first[i] == second[i] for i in common), n),
            "kappa": round(kappa, 3) if not math.isnan(kappa) else math.nan}


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
