"""Results in alpaca_eval's formats, so its tools can read them: per (judge, reference, test
set), `annotations.json` and `leaderboard.csv` (alpaca_eval's `evaluate` writes these two).

Meanings follow alpaca_eval (src/alpaca_eval/main.py, metrics/winrate.py, metrics/helpers.py):
`output_1` / `generator_1` is the reference (alpaca_eval's baseline), `output_2` / `generator_2`
the model; `preference` 1 means the reference is preferred, 2 the model, 1.5 a draw. We judge
every item in both orders, so an item's preference is 1 + the model's score averaged over the
two orders: 1, 1.25, 1.5, 1.75 or 2 (alpaca_eval's weighted annotators also give values in
between), and null where an order gave no verdict (alpaca_eval leaves such rows out). The
leaderboard's columns are alpaca_eval's: win_rate = mean(preference - 1) x 100,
standard_error its standard error of the mean (x 100), n_wins / n_wins_base the items above /
below 1.5, n_draws those at 1.5, n_total the items with a preference, discrete_win_rate the win
rate with each preference rounded to a win, draw or loss, avg_length the model's mean output
length in characters, mode 'community' (what alpaca_eval gives a model it evaluates).
length_controlled_winrate and lc_standard_error are ours (alpacare.winrates: one logistic fit
per model and reference; alpaca_eval 2.0's GLM adds an instruction term), empty where not
estimable; so is annotator_model, the model that answered for the judge's role (the verdicts'
judge_model: `annotator` is the role), in the leaderboard and in each annotation.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from .data import user_message
from .io import write_text
from .winrates import ORDERS, order_score, scored_items

LEADERBOARD_COLUMNS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                       "discrete_win_rate", "mode", "avg_length", "length_controlled_winrate", "lc_standard_error",
                       "annotator_model")


def annotations(rows: list[dict], model_outputs: list[dict], reference_outputs: list[dict], *, judge: str,
                model: str, reference: str, dataset: str) -> list[dict]:
    """One annotation per item of the model's outputs, in alpaca_eval's record format."""
    scores = scored_items(rows)
    by_order: dict = {}
    for row in rows:
        by_order.setdefault(row["id"], {})[row["order"]] = row
    reference_by_id = {r["id"]: r for r in reference_outputs}
    out = []
    for item in model_outputs:
        ref = reference_by_id[item["id"]]
        orders = by_order.get(item["id"], {})
        score = scores.get(item["id"])
        record = {
            "instruction": user_message(item["instruction"], item.get("input", "")),
            "output_1": ref["output"], "generator_1": reference,
            "output_2": item["output"], "generator_2": model,
            "dataset": dataset, "annotator": judge,
            "preference": None if score is None else 1 + score,
        }
        for order in ORDERS:  # what each order said by itself (a log-prob judge's debiased verdict is `preference`)
            s = order_score(orders[order]) if order in orders else None
            record[f"preference_{order}"] = None if s is None else 1 + s
        record["raw_completion"] = {order: orders[order].get("reply") for order in ORDERS if order in orders}
        answered = list(dict.fromkeys(r["judge_model"] for r in orders.values() if r.get("judge_model")))
        record["annotator_model"] = " + ".join(answered) or None
        record["id"] = item["id"]
        out.append(record)
    return out


def leaderboard_row(records: list[dict], model_outputs: list[dict], summary: dict) -> dict:
    """alpaca_eval's leaderboard columns for one model, from its annotations (alpaca_eval's
    arithmetic: AbsoluteScoringRule.describe_head2head and ZeroOneScoringRule)."""
    prefs = np.array([r["preference"] for r in records if r["preference"] is not None], dtype=float) - 1
    n = len(prefs)
    discrete = np.where(prefs == 0.5, 0.5, np.round(prefs))
    return {
        "win_rate": float(prefs.mean() * 100) if n else math.nan,
        "standard_error": float(prefs.std(ddof=1) / math.sqrt(n) * 100) if n > 1 else math.nan,
        "n_wins": int((prefs > 0.5).sum()), "n_wins_base": int((prefs < 0.5).sum()),
        "n_draws": int((prefs == 0.5).sum()), "n_total": n,
        "discrete_win_rate": float(discrete.mean() * 100) if n else math.nan,
        "mode": "community",
        "avg_length": int(np.mean([len(o["output"]) for o in model_outputs])) if model_outputs else 0,
        "length_controlled_winrate": summary["lc_win_rate"],
        "lc_standard_error": summary["lc_se"],
        "annotator_model": summary["judge_model"],
    }


def write_leaderboard(path, rows: dict) -> None:
    """model -> leaderboard_row, as alpaca_eval's pandas writes it: the model name as the
    unnamed index, sorted by win rate (highest first); NaN as an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["", *LEADERBOARD_COLUMNS])
    ordered = sorted(rows.items(), key=lambda kv: (-kv[1]["win_rate"] if not math.isnan(kv[1]["win_rate"]) else math.inf, kv[0]))
    for model, row in ordered:
        writer.writerow([model, *("" if isinstance(row[c], float) and math.isnan(row[c]) else row[c]
                                  for c in LEADERBOARD_COLUMNS)])
    write_text(path, buffer.getvalue())
