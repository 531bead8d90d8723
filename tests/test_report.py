import csv
import math

import json

import numpy as np
import pytest
import yaml

from alpacare import figures, report, winrates
from conftest import ROOT
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
    out = {"csv": tmp_path / "out" / "winrates.csv", "png": tmp_path / "out" / "winrates.png",
           "svg": tmp_path / "out" / "winrates.svg"}
    for kind in ("csv", "md", "tex", "html"):
        out[kind] = tmp_path / "out" / f"winrates.{kind}"
        out[f"difficulty_{kind}"] = tmp_path / "out" / f"by_difficulty.{kind}"
        out[f"agreement_{kind}"] = tmp_path / "out" / f"agreement.{kind}"
    outputs = {(g, "t_set"): tmp_path / f"{g}.json" for g in ("model_x", "model_y", "ref_1", "ref_2")}
    make_report(verdict_files, outputs, {"t_set": tmp_path / "t.jsonl"}, out)
    csv_lines = out["csv"].read_text().splitlines()
    assert csv_lines[0].split(",") == list(report.COLUMNS) and len(csv_lines) == 9
    first = next(csv.DictReader(csv_lines))
    assert first["judge"] == "j1" and first["win_rate"] == "80.00" and first["invalid"] == "0"
    assert float(first["ci_low"]) <= 80.0 <= float(first["ci_high"])
    # ten items: too few for a length-controlled win rate, and the caption says why
    assert first["lc_win_rate"] == "n/a" and first["lc_note"] == "10 scored item(s), fewer than 30"
    md = out["md"].read_text()
    assert "| j1 | ref_1 | t_set | model_x | 80.00 |" in md
    assert "LC n/a for 8 of 8 cells: j1/ref_1/t_set/model_x: 10 scored item(s), fewer than 30" in md.splitlines()[0]
    # the two judges gave the same verdicts on the same pairs: full agreement
    agreement = out["agreement_csv"].read_text().splitlines()
    assert agreement == ["judge,other_judge,testset,cells,items,identical,kappa", "j1,j2,t_set,4,40,100.00,1.00"]
    tex = out["tex"].read_text()
    assert r"\begin{tabular}" in tex and r"ref\_1 & t\_set & model\_x & 80.00" in tex and r"\toprule" in tex
    assert "<td class=num>80.00</td>" in out["html"].read_text()
    assert len(out["difficulty_csv"].read_text().splitlines()) == 1 + 8 * 5
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in out["svg"].read_bytes()[:500]
    png, svg = out["png"].read_bytes(), out["svg"].read_bytes()
    make_report(verdict_files, outputs, {"t_set": tmp_path / "t.jsonl"}, out)
    assert out["png"].read_bytes() == png and out["svg"].read_bytes() == svg  # byte-identical on a rebuild


def lc_rows(n, longer_share, seed=0):
    """Verdict rows and lengths for n items; the model's output is longer on a share of them."""
    rng = np.random.default_rng(seed)
    rows = rows_from({i: (float(a), float(b)) for i, (a, b) in enumerate(rng.integers(0, 2, size=(n, 2)))})
    lengths = {i: (100 + (50 if i < longer_share * n else -50), 100) for i in range(n)}
    return rows, lengths


def test_the_length_controlled_win_rate_is_shown_only_where_estimable():
    rows, lengths = lc_rows(12, 0.5)
    s = winrates.summarize(rows, lengths=lengths, seed=1)
    assert math.isnan(s["lc_win_rate"]) and s["lc_note"] == "12 scored item(s), fewer than 30"
    rows, lengths = lc_rows(40, 1.0)   # the model always longer: equal length is outside the data
    s = winrates.summarize(rows, lengths=lengths, seed=1)
    assert math.isnan(s["lc_win_rate"]) and math.isnan(s["lc_ci_low"])
    assert s["lc_note"] == "the model's output is shorter (or as long) on only 0 of 40 items (each side of equal length needs 4: 10%)"
    rows, lengths = lc_rows(40, 0.95)   # 2 of 40 shorter: still one-sided
    assert "shorter (or as long) on only 2 of 40" in winrates.summarize(rows, lengths=lengths)["lc_note"]
    # all of equal length: nothing to extrapolate, the length-controlled win rate is the win rate
    s = winrates.summarize(rows, lengths={i: (100, 100) for i in range(40)})
    assert s["lc_note"] == "" and s["lc_win_rate"] == pytest.approx(s["win_rate"], abs=0.2)
    rows, lengths = lc_rows(200, 0.5)
    s = winrates.summarize(rows, lengths=lengths, seed=1)
    assert s["lc_note"] == "" and s["lc_ci_low"] < s["lc_win_rate"] < s["lc_ci_high"] and s["lc_se"] > 0
    assert s == winrates.summarize(rows, lengths=lengths, seed=1)   # the bootstrap is seeded
    # the win rate's own interval is what it was without lengths
    assert {k: s[k] for k in ("ci_low", "ci_high")} == {k: winrates.summarize(rows, seed=1)[k] for k in ("ci_low", "ci_high")}


def test_the_bootstraps_batched_fit_is_the_single_fit():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, size=(6, 80)) / 4
    d = rng.normal(0, 200, size=(6, 80))
    batched = winrates._fit_at_equal_length(y, d)
    assert batched == pytest.approx([winrates.length_controlled(y[i], d[i]) for i in range(6)], abs=1e-9)


def test_judge_agreement_and_cohens_kappa():
    first = {0: 1.0, 1: 0.75, 2: 0.0, 3: 0.5, 4: 1.0}
    second = {0: 1.0, 1: 0.0, 2: 0.25, 3: 0.5, 9: 1.0}   # item 9 only one judge scored
    a = winrates.agreement(first, second)
    # outcomes on items 0-3: (win, win), (win, loss), (loss, loss), (tie, tie): 3 of 4 agree;
    # chance: win 2/4 x 1/4 + loss 1/4 x 2/4 + tie 1/4 x 1/4 = 5/16
    assert a["items"] == 4 and a["identical"] == 50.0
    assert a["kappa"] == round((3 / 4 - 5 / 16) / (1 - 5 / 16), 3)
    assert math.isnan(winrates.agreement({0: 1.0}, {1: 1.0})["kappa"])


def test_agreement_is_pooled_over_the_pairs_two_judges_share():
    from alpacare.stages.report import judge_agreement

    same = rows_from({0: (1.0, 1.0), 1: (0.0, 0.0)})
    other = rows_from({0: (1.0, 1.0), 1: (1.0, 1.0)})
    verdicts = {("j1", "r", "t", "m"): same, ("j2", "r", "t", "m"): other, ("j1", "r", "t", "m2"): same,
                ("j2", "r", "u", "m"): same}   # j2 saw m2 nowhere, and test set u without j1
    assert judge_agreement(verdicts) == [{"judge": "j1", "other_judge": "j2", "testset": "t", "cells": 1, "items": 2,
                                          "identical": 50.0, "kappa": 0.0}]


def test_leaderboard_and_annotations_follow_alpaca_evals_definitions(tmp_path):
    from alpacare import leaderboard

    scores = {0: (1.0, 1.0), 1: (1.0, 0.5), 2: (0.5, 0.5), 3: (0.0, 0.5), 4: (0.0, 0.0), 5: (1.0, None)}
    rows = rows_from(scores)
    for row in rows:
        row["reply"] = f"reply {row['id']} {row['order']}"
    model = [{"id": i, "instruction": f"q{i}", "input": "ctx" if i == 0 else "", "output": "m" * (10 + i)} for i in range(6)]
    reference = [{"id": i, "instruction": f"q{i}", "input": "", "output": f"r{i}"} for i in range(6)]
    records = leaderboard.annotations(rows, model, reference, judge="j", model="m", reference="r", dataset="t")
    assert [r["preference"] for r in records] == [2.0, 1.75, 1.5, 1.25, 1.0, None]   # 1 + the model's score
    first = records[0]
    assert (first["output_1"], first["generator_1"], first["output_2"], first["generator_2"]) == ("r0", "r", "m" * 10, "m")
    assert first["instruction"] == "q0\n\nctx" and first["annotator"] == "j" and first["dataset"] == "t"
    assert records[1]["preference_reference_first"] == 2.0 and records[1]["preference_model_first"] == 1.5
    summary = winrates.summarize(rows)
    board = leaderboard.leaderboard_row(records, model, summary)
    # alpaca_eval's arithmetic (metrics/helpers.py) on preferences 2, 1.75, 1.5, 1.25, 1
    assert board["win_rate"] == pytest.approx(50.0) and board["win_rate"] == pytest.approx(summary["win_rate"])
    assert board["standard_error"] == pytest.approx(100 * np.std([1, 0.75, 0.5, 0.25, 0], ddof=1) / math.sqrt(5))
    assert (board["n_wins"], board["n_wins_base"], board["n_draws"], board["n_total"]) == (2, 2, 1, 5)
    assert board["discrete_win_rate"] == pytest.approx(50.0) and board["avg_length"] == 12 and board["mode"] == "community"
    leaderboard.write_leaderboard(tmp_path / "leaderboard.csv", {"m": board, "better": {**board, "win_rate": 80.0}})
    lines = (tmp_path / "leaderboard.csv").read_text().splitlines()
    # alpaca_eval's header (src/alpaca_eval/leaderboards/data_AlpacaEval_2/*.csv): the model as an unnamed index
    # then the model that answered for the judge's role (ours, as the length-controlled columns)
    assert lines[0] == (",win_rate,standard_error,n_wins,n_wins_base,n_draws,n_total,discrete_win_rate,mode,avg_length,"
                        "length_controlled_winrate,lc_standard_error,annotator_model")
    assert [line.split(",")[0] for line in lines[1:]] == ["better", "m"]   # sorted by win rate
    # the length-controlled win rate: not estimable here, empty; these rows name no judge model
    assert lines[2].endswith(",community,12,,,not recorded")
    named = [{**row, "judge_model": "gpt-4o-mini-2024-07-18"} for row in rows]
    records = leaderboard.annotations(named, model, reference, judge="j", model="m", reference="r", dataset="t")
    assert {r["annotator"] for r in records} == {"j"} and {r["annotator_model"] for r in records} == {"gpt-4o-mini-2024-07-18"}
    assert leaderboard.leaderboard_row(records, model, winrates.summarize(named))["annotator_model"] == "gpt-4o-mini-2024-07-18"


RELEASED = yaml.safe_load((ROOT / "configs/released.yaml").read_text())


@pytest.mark.parametrize("configfile", ["configs/released.yaml", "configs/paper.yaml"])
def test_every_published_number_has_a_cell_in_the_papers_configs(configfile):
    from alpacare.config import load

    config = load(ROOT / configfile, ROOT)
    published = figures.read_published(ROOT / "data/paper/alpacare_published.yaml")
    listed = {(key, panel["testset"], model, ref) for key, spec in published["figures"].items() for panel in spec["panels"]
              for model, by_ref in panel["values"].items() for ref, value in by_ref.items() if value is not None}
    counts, used = {}, set()
    for name, spec in config["figures"].items():
        if "paper_figure" not in spec:
            continue   # Figure 11 and the addition: no published numbers
        cells = figures.published_cells(published, spec["paper_figure"], spec)
        label = lambda n: spec["names"].get(n, n)  # noqa: E731
        used |= {(key, label(t), label(m), label(r)) for key in figures.paper_figures(spec)
                 for t in spec["testsets"] for m in spec["models"] for r in spec["references"]} & listed
        # drawn beside the cells of the judge that produced them, and no other
        rows = [{"judge": j, "testset": t, "model": m, "reference": r, "win_rate": 50.0} for j in spec["judges"]
                for t in spec["testsets"] for m in spec["models"] for r in spec["references"]]
        shown = figures.figure_rows(rows, spec, cells, published["judge"])
        assert all(math.isnan(r["published"]) for r in shown if r["judge"] != published["judge"]), name
        counts[name] = sum(not math.isnan(r["published"]) for r in shown)
    # no number in the file goes unused: a label typo would silently drop it
    assert used == listed
    assert counts == {"figure2": 48, "figure3": 24, "figure4": 12, "figure10": 48, "figure5": 18, "figure6": 48}


def test_published_numbers_are_found_under_the_released_configs_names():
    from alpacare.config import validate

    config = validate(json.loads(json.dumps(RELEASED)))
    published = figures.read_published(ROOT / "data/paper/alpacare_published.yaml")
    published = figures.read_published(ROOT / "data/paper/alpacare_published.yaml")
    cells = figures.published_cells(published, "Figure 2", config["figures"]["figure2"])
    assert cells[("icliniq", "alpacare-7b", "claude-2")] == (49.65, "Figure 2(a), plots/7b-model-results-1.png")
    assert cells[("medinstruct-test", "chatdoctor-7b", "gpt-4")][0] == 20.4
    assert figures.published_cells(published, "Figure 6", config["figures"]["figure6"])[
        ("alpacafarm", "alpacare-13b", "text-davinci-003")][0] == 60.7


def test_a_figure_in_the_papers_layout_beside_the_published_numbers(tmp_path):
    from alpacare.stages.figure import make_figure

    spec = {**RELEASED["figures"]["figure6"], "judges": ["gpt-3.5-turbo"], "published": str(ROOT / "data/paper/alpacare_published.yaml")}
    spec["names"] = RELEASED["_names"]
    verdict_files, output_files = {}, {}
    for testset in spec["testsets"]:
        for generator in spec["models"] + spec["references"]:
            path = tmp_path / f"{generator}.{testset}.json"
            write_json(path, [{"id": i, "instruction": f"q{i}", "input": "", "output": "w" * (20 + i * len(generator) % 7)}
                              for i in range(40)])
            output_files[(generator, testset)] = path
        for m, model in enumerate(spec["models"]):
            for r, reference in enumerate(spec["references"]):
                path = tmp_path / f"{model}.{reference}.{testset}.jsonl"
                write_jsonl(path, [{**row, "judge_model": "gpt-4o-mini-2024-07-18"} for row in
                                   rows_from({i: (float((i + m) % 3 > 0), float((i * r) % 4 > 1)) for i in range(40)})])
                verdict_files[("gpt-3.5-turbo", reference, testset, model)] = path
    verdict_files.pop(("gpt-3.5-turbo", "claude-2", "alpacafarm", "medalpaca-13b"))
    out = {k: tmp_path / "out" / f"figure6.{ext}" for k, ext in [("png", "png"), ("svg", "svg"), ("csv", "csv"),
                                                                  ("md", "md"), ("html", "html")]}
    with pytest.raises(KeyError):   # every cell of the grid must be there
        make_figure(spec, verdict_files, output_files, spec["published"], out)
    path = tmp_path / "missing.jsonl"
    write_jsonl(path, rows_from({i: (None, None) for i in range(40)}))   # judged, nothing scored: no bar, no error
    verdict_files[("gpt-3.5-turbo", "claude-2", "alpacafarm", "medalpaca-13b")] = path
    make_figure(spec, verdict_files, output_files, spec["published"], out)
    table = list(csv.DictReader(out["csv"].read_text().splitlines()))
    assert len(table) == 3 * 4 * 4 and [r["testset"] for r in table[:17:16]] == ["icliniq", "medinstruct-test"]
    row = next(r for r in table if (r["testset"], r["model"], r["reference"]) == ("icliniq", "alpacare-13b", "gpt-4"))
    assert row["published"] == "48.20" and row["published_source"] == "Figure 6(a), plots/13b-model-results.png"
    assert float(row["difference"]) == pytest.approx(float(row["win_rate"]) - 48.2, abs=0.011)
    empty = next(r for r in table if (r["testset"], r["model"], r["reference"]) == ("alpacafarm", "medalpaca-13b", "claude-2"))
    assert empty["win_rate"] == "n/a" and empty["published"] == "0.00" and empty["difference"] == "n/a"
    md = out["md"].read_text()
    assert md.startswith("Figure 6: Result comparison on 13B instruction-tuned models")
    assert "Published: Zhang et al., AlpaCare" in md and "(judge gpt-3.5-turbo)" in md
    assert "LC n/a for 1 of 48 cells: gpt-3.5-turbo/claude-2/alpacafarm/medalpaca-13b: 0 scored item(s), fewer than 30." in md
    # the judge by its role and by the model that answered; the difference names both judges it compares
    assert "Rebuilt; judge: gpt-3.5-turbo's role, played by gpt-4o-mini-2024-07-18." in md
    assert "rebuilt - published (gpt-4o-mini-2024-07-18 minus the paper's gpt-3.5-turbo)" in md
    assert row["judge_model"] == "gpt-4o-mini-2024-07-18"
    png, svg = out["png"].read_bytes(), out["svg"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"AlpaCare" in svg and b"Claude-2" in svg   # the paper's labels
    make_figure(spec, verdict_files, output_files, spec["published"], out)
    assert out["png"].read_bytes() == png and out["svg"].read_bytes() == svg


def test_bad_published_files_are_named(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("source: s\njudge: j\nfigures: {F: {panels: [{testset: T, source: s, values: {M: {R: 140}}}]}}\n")
    with pytest.raises(figures.PublishedError, match=r"p\.yaml: figures\.F\.panels\.0\.values\.M\.R: 140 is no win rate"):
        figures.read_published(path)
    path.write_text("source: s\nfigures: {}\n")
    with pytest.raises(figures.PublishedError, match=r"p\.yaml: needs a text field 'judge'"):
        figures.read_published(path)
