import math

import numpy as np
import pytest

from alpacare import report, winrates
from alpacare.stages.report import make_report
from alpacare.io import read_jsonl, write_json, write_jsonl


def rows_from(scores_by_item):
    """Verdict rows from {id: (reference_first score, model_first score)}; None is invalid."""
    pref = {None: None, 0.5: "tie"}
    rows = []
    for i, (rf, mf) in scores_by_item.items():
        for order, s in (("reference_first", rf), ("model_first", mf)):
            p = pref.get(s) if s in pref else ({1.0: "b", 0.0: "a"} if order == "reference_first" else {1.0: "a", 0.0: "b"})[s]
            rows.append({"id": i, "order": order, "preference": p, "model_score": s, "invalid": s is None})
    return rows


def test_summary_counts_ties_flips_orders_and_invalid():
    rows = rows_from({0: (1.0, 1.0), 1: (1.0, 0.0), 2: (0.5, 0.5), 3: (0.0, None), 4: (0.0, 0.0)})
    s = winrates.summarize(rows)
    assert s["items"] == 5 and s["scored_items"] == 4 and s["invalid"] == 1
    assert s["win_rate"] == 50.0                       # (1 + 0.5 + 0.5 + 0) / 4
    assert s["tie_rate"] == round(100 * 2 / 9, 2)      # 2 of the 9 valid judgments said tie
    assert s["flip_rate"] == 25.0                      # item 1 changes with the order
    assert s["win_rate_reference_first"] == 50.0 and s["win_rate_model_first"] == 37.5
    assert s["se"] == round(100 * np.std([1, 0.5, 0.5, 0], ddof=1) / 2, 2)


def test_bootstrap_interval_is_reproducible_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    rows = rows_from({i: (float(a), float(b)) for i, (a, b) in enumerate(rng.integers(0, 2, size=(200, 2)))})
    first, again = winrates.summarize(rows, seed=7), winrates.summarize(rows, seed=7)
    assert first == again
    assert first["ci_low"] < first["win_rate"] < first["ci_high"]
    # a 95 % interval of a mean is about +-1.96 standard errors wide
    assert (first["ci_high"] - first["ci_low"]) == pytest.approx(2 * 1.96 * first["se"], rel=0.15)
    assert winrates.summarize(rows, seed=8)["ci_low"] != first["ci_low"] or winrates.summarize(rows, seed=8)["ci_high"] != first["ci_high"]


def test_length_controlled_win_rate_removes_a_length_preference():
    # the model wins exactly when its answer is longer; at equal length it is a coin flip
    rng = np.random.default_rng(1)
    diff = rng.normal(0, 300, size=400)
    wins = (diff > 0).astype(float)
    assert wins.mean() == pytest.approx(0.5, abs=0.06)
    assert winrates.length_controlled(wins, diff) == pytest.approx(0.5, abs=0.05)
    # a model that is always longer and always wins: raw 100 %, length-controlled far lower
    longer = np.abs(diff) + 50
    judged = (rng.random(400) < 1 / (1 + np.exp(-(np.tanh(longer / longer.std()) * 4 - 2)))).astype(float)
    lc = winrates.length_controlled(judged, longer)
    assert lc < judged.mean() - 0.15
    # no length difference at all: the length-controlled win rate is the win rate
    assert winrates.length_controlled(np.array([1, 0, 1, 1.0]), np.zeros(4)) == pytest.approx(0.75, abs=0.01)
    # all wins still give a finite, high value
    assert 0.95 < winrates.length_controlled(np.ones(50), rng.normal(size=50)) < 1


def test_difficulty_breakdown():
    rows = rows_from({0: (1.0, 1.0), 1: (0.0, 0.0), 2: (1.0, 0.0), 3: (1.0, 1.0)})
    levels = winrates.by_difficulty(rows, {0: 1, 1: 1, 2: 5, 3: 5})
    assert [(x["difficulty"], x["items"], x["win_rate"]) for x in levels] == [(1, 2, 50.0), (5, 2, 75.0)]


def test_nothing_scored_is_nan_not_an_error():
    s = winrates.summarize(rows_from({0: (None, None)}))
    assert math.isnan(s["win_rate"]) and s["invalid"] == 2


def test_tables_figures_and_their_formats(tmp_path):
    testset = [{"id": i, "instruction": f"q{i}", "input": "", "match": f"q{i}", "difficulty": i % 5 + 1} for i in range(10)]
    write_jsonl(tmp_path / "t.jsonl", testset)
    for gen in ("model_x", "model_y", "ref_1", "ref_2"):
        write_json(tmp_path / f"{gen}.json", [{"id": i, "instruction": f"q{i}", "input": "", "output": "w" * (10 + i * (gen == "model_x")),
                                                "generator": gen} for i in range(10)])
    verdict_files = {}
    for judge in ("j1", "j2"):
        for ref in ("ref_1", "ref_2"):
            for model in ("model_x", "model_y"):
                path = tmp_path / f"{judge}_{ref}_{model}.jsonl"
                write_jsonl(path, rows_from({i: (1.0 if i % 3 else 0.0, 0.5 if model == "model_y" else 1.0) for i in range(10)}))
                verdict_files[(judge, ref, "t_set", model)] = path
    out = {name: tmp_path / "out" / f"{name}.{ext}" for name, ext in [
        ("csv", "csv"), ("md", "md"), ("tex", "tex"), ("html", "html"), ("difficulty_csv", "csv"), ("difficulty_md", "md"),
        ("difficulty_tex", "tex"), ("difficulty_html", "html"), ("png", "png"), ("svg", "svg")]}
    out["difficulty_csv"] = tmp_path / "out" / "by_difficulty.csv"
    for kind in ("md", "tex", "html"):
        out[f"difficulty_{kind}"] = tmp_path / "out" / f"by_difficulty.{kind}"
    outputs = {(g, "t_set"): tmp_path / f"{g}.json" for g in ("model_x", "model_y", "ref_1", "ref_2")}
    make_report(verdict_files, outputs, {"t_set": tmp_path / "t.jsonl"}, out)
    csv_lines = out["csv"].read_text().splitlines()
    assert csv_lines[0].split(",") == list(report.COLUMNS) and len(csv_lines) == 9
    first = dict(zip(report.COLUMNS, csv_lines[1].split(",")))
    assert first["judge"] == "j1" and first["win_rate"] == "80.00" and first["invalid"] == "0"
    assert float(first["ci_low"]) <= 80.0 <= float(first["ci_high"]) and first["lc_win_rate"] != "n/a"
    assert "| j1 | ref_1 | t_set | model_x | 80.00 |" in out["md"].read_text()
    tex = out["tex"].read_text()
    assert r"\begin{tabular}" in tex and r"ref\_1 & t\_set & model\_x & 80.00" in tex and r"\toprule" in tex
    assert "<td class=num>80.00</td>" in out["html"].read_text()
    assert len(out["difficulty_csv"].read_text().splitlines()) == 1 + 8 * 5
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in out["svg"].read_bytes()[:500]
    png, svg = out["png"].read_bytes(), out["svg"].read_bytes()
    make_report(verdict_files, outputs, {"t_set": tmp_path / "t.jsonl"}, out)
    assert out["png"].read_bytes() == png and out["svg"].read_bytes() == svg  # byte-identical on a rebuild
