"""Judges against people: alpacare.judgevalidation against alpaca_eval's own definitions."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alpacare import crossannotations as ca
from alpacare import judgevalidation as jv

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "judgevalidation" / "alpaca_farm_human_crossannotations.json"
# the `alpaca-eval` package lives in a venv of its own (its pins clash with the project's lock); .ci/run makes it
ALPACA_EVAL_PYTHON = Path(os.environ.get("ALPACA_EVAL_PYTHON", "/tmp/alpaca-eval-venv/bin/python"))


def rows():
    return json.loads(FIXTURE.read_text())


def test_fixture_is_in_the_real_files_format():
    data = rows()
    ca.check_rows(data, str(FIXTURE))
    fields = {"instruction": str, "output_1": str, "output_2": str, "preference": int, "annotator_index": int,
              "dataset": str, "datasplit": str}   # the hub loader's features for this config
    assert all(set(r) == set(fields) and all(isinstance(r[f], t) for f, t in fields.items()) for r in data)
    # a pair with 3 annotations is dropped, one with 5 keeps its first 4: 13 pairs of 4
    assert len(ca.gold(data)) == 13 and len(ca.gold_rows(data)) == 52


def test_agreement_as_alpaca_eval_documents_it():
    """The worked example in alpaca_eval's Analyzer.agreement_of_annotations docstring."""
    data = [{"instruction": f"q{n // 4}", "output_1": "x", "output_2": "y", "preference": p}
            for n, p in enumerate([1] * 4 + [2, 2, 2, 1])]
    table = ca.table(data)
    one_vs_one = jv.agreement(table, None, n1=1, n2=1)
    assert one_vs_one["score"] == pytest.approx(0.75)
    assert one_vs_one["sem_annotators"] == pytest.approx(0.075378, abs=1e-6)
    assert jv.agreement(table, None, n1=1, n2=3)["score"] == pytest.approx(0.875)


def test_mode_tie_break_is_pandas_sample_with_seed_123():
    pandas = pytest.importorskip("pandas")
    for values in ([1.0, 2.0], [1.0, 2.0, 1.5], [2.0, 1.0, 2.0, 1.0]):
        expected = pandas.Series(values).mode().sample(1, random_state=123).item()
        assert jv.random_mode(values) == expected


def test_refuses_a_file_not_in_the_format_naming_the_record():
    bad = rows()[:3] + [{"instruction": "q", "output_1": "a", "preference": 1}]
    with pytest.raises(ca.CrossAnnotationError, match="record 3 .*'output_2'"):
        ca.check_rows(bad, "x.json")


def test_judge_rows_are_both_orders_in_alpaca_evals_preference():
    pair_list = ca.pairs(rows(), limit=3)
    scores = {(pair_list[0]["id"], "reference_first"): 0.0, (pair_list[0]["id"], "model_first"): 1.0,
              (pair_list[1]["id"], "reference_first"): 0.5, (pair_list[1]["id"], "model_first"): None,
              (pair_list[2]["id"], "reference_first"): 1.0, (pair_list[2]["id"], "model_first"): 1.0}
    verdicts = [{"id": i, "order": o, "model_score": s} for (i, o), s in scores.items()]
    annotated = jv.judge_rows(pair_list, verdicts)
    assert [r["index"] for r in annotated] == [0, 0, 0, 1, 1, 1]
    assert [r["preference"] for r in annotated] == [1.0, 1.5, 2.0, 2.0, None, 2.0]
    with pytest.raises(ca.CrossAnnotationError, match="lack 1 pair"):
        jv.judge_rows(pair_list, verdicts[:-1])


def a_judge(data):
    """A judge's two orders on the fixture's pairs: longest in one order, a flip, a tie and an unparsed reply."""
    pair_list = ca.pairs(data)
    verdicts = []
    for n, p in enumerate(pair_list):
        longer_second = len(p["output_2"]) >= len(p["output_1"])
        verdicts.append({"id": p["id"], "order": "reference_first", "model_score": 1.0 if longer_second else 0.0})
        second = {0: None, 1: 0.5}.get(n, (1.0 if longer_second else 0.0) if n % 3 else 1.0)
        verdicts.append({"id": p["id"], "order": "model_first", "model_score": second})
    return jv.judge_rows(pair_list, verdicts)


@pytest.mark.skipif(not ALPACA_EVAL_PYTHON.exists(), reason=f"no alpaca-eval venv at {ALPACA_EVAL_PYTHON} (.ci/run "
                    "creates it: python3 -m venv /tmp/alpaca-eval-venv && /tmp/alpaca-eval-venv/bin/pip install -r "
                    "requirements/alpaca-eval.txt); set ALPACA_EVAL_PYTHON to another")
def test_same_metrics_as_the_alpaca_eval_package(tmp_path):
    """humans, longest and a judge with ties and an unparsed reply: every leaderboard column
    alpaca_eval 0.6.6 computes from the cross-annotations, and its standard error of the agreement."""
    data = rows()
    judge = a_judge(data)
    (tmp_path / "judge.json").write_text(json.dumps(judge))
    done = subprocess.run([str(ALPACA_EVAL_PYTHON), str(ROOT / "tests" / "alpaca_eval_reference.py"), str(FIXTURE),
                           str(tmp_path / "judge.json")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(done.stdout)
    ours = {**jv.anchors(data), "judge": jv.metrics(judge, ca.gold(data), price_per_example=0.0, seconds_per_example=0.0)}
    columns = {"Human agreement": "human_agreement", "human_agreement_se": "human_agreement_se", "Bias": "bias",
               "Variance": "variance", "Proba. prefer longer": "prefer_longer", "Proba. prefer lists": "prefer_lists",
               "Proba. prefer 1": "prefer_1", "# parsed": "parsed", "Price [$/1000 examples]": "price_per_1000",
               "Time [seconds/1000 examples]": "seconds_per_1000"}
    for name in ("humans", "longest", "judge"):
        for their_column, our_key in columns.items():
            expected, got = theirs[name][their_column], ours[name][our_key]
            if expected is None:
                assert got is None or math.isnan(got), (name, their_column, got)
            else:
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), (name, their_column, got, expected)
    # the judge differs from the anchors, so the comparison tests something
    assert ours["judge"]["human_agreement"] not in (ours["humans"]["human_agreement"], ours["longest"]["human_agreement"])
    assert 0 < ours["judge"]["variance"] and ours["judge"]["parsed"] == 2 * 13 - 1
    print(json.dumps({n: {k: ours[n][k] for k in columns.values()} for n in ours}, indent=1), file=sys.stderr)


# --- the people's file: pinned or refused ---


def test_the_hub_file_without_a_pin_is_refused_by_name():
    params = ca.source_params({})
    assert params["hub"] == "tatsu-lab/alpaca_eval:alpaca_farm_human_crossannotations.json" and not ca.is_pinned(params)
    with pytest.raises(ca.CrossAnnotationPinMissing, match="no pinned revision and SHA-256.*judge_validation.revision"):
        ca.read_source(params)
    with pytest.raises(ca.CrossAnnotationPinMissing, match="no pinned SHA-256"):
        ca.read_source(ca.source_params({"crossannotations": FIXTURE.as_uri()}))


def test_a_download_is_used_only_when_its_sha256_matches(tmp_path):
    import hashlib

    digest = hashlib.sha256(FIXTURE.read_bytes()).hexdigest()
    good = ca.source_params({"crossannotations": FIXTURE.as_uri(), "sha256": digest})
    assert ca.is_pinned(good) and ca.read_source(good) == FIXTURE.read_bytes()
    bad = ca.source_params({"crossannotations": FIXTURE.as_uri(), "sha256": "0" * 64})
    with pytest.raises(ca.CrossAnnotationError, match="is not the pinned 0000"):
        ca.read_source(bad)
    hub = ca.source_params({"revision": "abc123", "sha256": digest})
    assert hub["url"] == ("https://huggingface.co/datasets/tatsu-lab/alpaca_eval/resolve/abc123/"
                          "alpaca_farm_human_crossannotations.json")


# --- the paper's configs validate every judge of their grid ---


def test_both_paper_configs_validate_every_judge_of_their_grid():
    from alpacare.config import load, verdict_cells

    for name, overrides in (("paper.yaml", {}), ("released.yaml", {"evaluation": {"judges": ["claude-2"]}})):
        config = load(ROOT / "configs" / name, ROOT)
        if overrides:  # the released config's judge is named on the command line
            config = load(ROOT / "configs" / name, ROOT)
            config["evaluation"].update(overrides["evaluation"])
            for figure in config["figures"].values():
                figure["judges"] = overrides["evaluation"]["judges"]
        grid = {j for j, _, _, _ in verdict_cells(config)}
        assert grid <= set(jv.validated_judges(config)), name
    paper = load(ROOT / "configs" / "paper.yaml", ROOT)
    assert jv.validated_judges(paper) == ["gpt-3.5-turbo", "claude-2"]


def test_paper_config_dry_run_plans_each_judges_validation(tmp_path):
    from conftest import copy_project
    from test_workflow import snakemake

    project = copy_project(tmp_path)
    targets = [f"results/judges/{j}/validation.md" for j in ("gpt-3.5-turbo", "claude-2")]
    pin = "judge_validation={judges: [gpt-3.5-turbo, claude-2], revision: abc, sha256: " + "0" * 64 + "}"
    result = snakemake(project, "-n", "--configfile", "configs/paper.yaml", "--config", pin, "--", *targets)
    stats = result.stdout.split("Job stats:")[1].split("total")[0]
    counts = dict((line.split()[0], int(line.split()[1])) for line in stats.splitlines()[3:] if line.strip())
    assert counts == {"judge_validation_data": 1, "judge_validation_pairs": 1, "judge_validation_verdicts_api": 2,
                      "judge_validation": 2}
    # unpinned, `all` leaves the tables out and says so
    result = snakemake(project, "-n", "--configfile", "configs/paper.yaml")
    assert "judge_validation" not in result.stdout.split("Job stats:")[1]
    assert "has no pinned revision and SHA-256" in result.stderr + result.stdout


# --- the target, offline: the local log-prob judge on the fixture ---


def test_validation_target_runs_offline_and_replays_from_the_cache(tmp_path):
    """The judge rule itself judges the fixture's pairs in both orders (cached, in the ledger);
    the table agrees with the metric code on its own verdicts; a replay-only rerun needs no model call."""
    import shutil

    import yaml
    from conftest import copy_project
    from test_workflow import ledger, snakemake

    from alpacare.io import read_jsonl

    project = copy_project(tmp_path)
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["judge_validation"] = {"judges": ["smollm2-logprob"], "limit": 4,
                                  "crossannotations": f"tests/data/judgevalidation/{FIXTURE.name}"}
    (project / "validation.yaml").write_text(yaml.safe_dump(config))
    target = "results/judges/smollm2-logprob/validation.md"
    snakemake(project, "--cores", "2", "--configfile", "validation.yaml", "--", target)

    out = project / "results" / "judges" / "smollm2-logprob"
    record = json.loads((out / "validation.json").read_text())
    verdicts = read_jsonl(out / "validation.verdicts.jsonl")
    assert record["pairs_judged"] == 4 and record["pairs_in_file"] == 13 and not record["full_published_set"]
    assert len(verdicts) == 8 and all(v["cache_keys"] and not v["invalid"] for v in verdicts)
    pair_list = ca.pairs(rows(), 4)
    people = jv.restrict(rows(), pair_list)
    expected = {"smollm2-logprob": jv.metrics(jv.judge_rows(pair_list, verdicts), ca.gold(people)), **jv.anchors(people)}
    measured = {r["evaluator"]: r for r in record["rows"] if r["source"] == "measured here"}
    for name, metrics in expected.items():
        assert measured[name]["human_agreement"] == pytest.approx(metrics["human_agreement"]), name
        assert measured[name]["parsed"] == metrics["parsed"], name
    assert {r["evaluator"] for r in record["rows"] if r["source"] != "measured here"} == {
        "gpt4", "humans", "claude", "text_davinci_003", "longest", "chatgpt"}
    table = (out / "validation.md").read_text()
    assert "| smollm2-logprob | measured here |" in table and "| chatgpt | alpaca_eval v0.6.6 (published) | 57.3 |" in table
    assert "log-prob judge: both orders carry one verdict" in table and measured["smollm2-logprob"]["variance"] == 0
    assert "human agreement" in (out / "validation.csv").read_text().splitlines()[0].replace("_", " ")
    calls = [r for r in ledger(project) if r["rule"] == "judge_validation_verdicts"]
    assert sum(r["calls"] for r in calls) == 8
    assert jv.human_agreement("smollm2-logprob", project / "results") is None   # a fixture is no measurement to quote
    assert jv.human_agreement("smollm2-logprob", project / "results", full_only=False) == pytest.approx(
        expected["smollm2-logprob"]["human_agreement"])

    # replayable: without the model's answers available, the cache alone rebuilds the same table
    shutil.rmtree(out)
    config["llm"]["replay_only"] = True
    (project / "validation.yaml").write_text(yaml.safe_dump(config))
    snakemake(project, "--cores", "2", "--configfile", "validation.yaml", "--", target)
    assert json.loads((out / "validation.json").read_text()) == record


# --- the bill ---


def test_forecast_bills_each_validated_judge_both_orders(tmp_path):
    """Exact on a local file (the pairs as the stage builds them), an estimate of the whole
    published file before it is downloaded; a copy in results/ counts only with the pinned checksum."""
    import shutil

    import yaml

    from alpacare.config import load, validate
    from alpacare.forecast import Forecast

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["judge_validation"] = {"judges": ["smollm2-logprob"], "limit": 5,
                                  "crossannotations": str(FIXTURE)}
    rows_ = Forecast(validate(config), tmp_path, {})
    rows_.judge_validation()
    (row,) = rows_.rows.values()
    assert (row.stage, row.calls, row.inputs) == ("judge_validation", 10, "exact")

    paper = load(ROOT / "configs" / "paper.yaml", ROOT)
    forecast = Forecast(paper, tmp_path, {})
    forecast.judge_validation()
    bill = {r.endpoint: r for r in forecast.rows.values()}
    assert set(bill) == {"gpt-4o-mini", "claude-haiku-4-5"}
    assert all(r.calls == 2 * ca.FULL_PAIRS and r.inputs.startswith("estimate") and r.cost_max_usd > 0
               for r in bill.values())
    # a file in results/ that is not the pinned one (here: the fixture) is no basis for an exact bill
    (tmp_path / "results" / "judges").mkdir(parents=True)
    shutil.copy(FIXTURE, tmp_path / "results" / "judges" / "crossannotations.json")
    forecast = Forecast(paper, tmp_path, {})
    forecast.judge_validation()
    assert all(r.calls == 2 * ca.FULL_PAIRS for r in forecast.rows.values())


# --- the paper's own pairs ---


def test_grid_preferences_count_each_orders_own_verdict():
    rows_ = [
        {"id": "i1", "order": "reference_first", "preference": "a", "model_score": 0.0},
        {"id": "i1", "order": "model_first", "preference": "a", "model_score": 1.0},
        {"id": "i2", "order": "reference_first", "preference": "b", "model_score": 1.0},
        {"id": "i2", "order": "model_first", "preference": "a", "model_score": 1.0},
        # a log-prob judge's debiased verdict (tie) hides what this order said: (a), the model
        {"id": "i3", "order": "reference_first", "preference": "tie", "model_score": 0.5,
         "order_preference": "a", "order_model_score": 0.0},
        {"id": "i3", "order": "model_first", "preference": "tie", "model_score": 0.5,
         "order_preference": "a", "order_model_score": 1.0},
    ]
    lengths = {"i1": (100, 10), "i2": (50, 60), "i3": (10, 200)}
    table = jv.grid_preferences([("j", "t", rows_, lengths, {"i1": 1, "i2": 2, "i3": 1})])
    by_level = {r["difficulty"]: r for r in table}
    assert [r["difficulty"] for r in table] == ["all", "1", "2"]
    overall = by_level["all"]
    assert (overall["verdicts"], overall["decisive"], overall["prefer_a"]) == (6, 6, 5 / 6)
    assert (overall["flip_rate"], overall["items_both_orders"]) == (2 / 3, 3)
    # i1: the shorter (reference) then the longer (model); i2 differs by 10 characters only; i3: the longer, then the shorter
    assert (overall["prefer_longer"], overall["length_differing"]) == (0.5, 4)
    assert (by_level["2"]["prefer_a"], by_level["2"]["flip_rate"]) == (0.5, 0.0)
    assert "| j | t | all | 6 | 0.83 ± 0.17 (n 6) |" in jv.preferences_markdown(table)


def test_the_preferences_stage_reads_the_cells_files(tmp_path):
    from alpacare.io import write_json, write_jsonl
    from alpacare.stages.judgevalidation import write_preferences

    write_json(tmp_path / "m.json", [{"id": "1", "output": "x" * 80}, {"id": "2", "output": "short"}])
    write_json(tmp_path / "r.json", [{"id": "1", "output": "y"}, {"id": "2", "output": "z" * 90}])
    write_jsonl(tmp_path / "t.jsonl", [{"id": "1", "difficulty": 3}, {"id": "2", "difficulty": 3}])
    write_jsonl(tmp_path / "v.jsonl", [{"id": i, "order": o, "preference": p, "model_score": s} for i, o, p, s in (
        ("1", "reference_first", "b", 1.0), ("1", "model_first", "a", 1.0),
        ("2", "reference_first", "a", 0.0), ("2", "model_first", "b", 0.0))])
    out = {"md": tmp_path / "p.md", "csv": tmp_path / "p.csv"}
    write_preferences({("j", "ref", "t", "m"): tmp_path / "v.jsonl"}, {("m", "t"): tmp_path / "m.json",
                      ("ref", "t"): tmp_path / "r.json"}, {"t": tmp_path / "t.jsonl"}, out)
    lines = out["csv"].read_text().splitlines()
    assert lines[0].startswith("judge,testset,difficulty,verdicts,prefer_a") and len(lines) == 3   # all, 3
    assert "| j | t | all | 4 | 0.50 ± 0.29 (n 4) | 0.00 ± 0.00 (n 2) | 1.00 ± 0.00 (n 4) |" in out["md"].read_text()


def test_a_planned_validation_needs_its_judges_api_key_before_any_job():
    from alpacare.config import load
    from alpacare.preflight import job_endpoints

    paper = load(ROOT / "configs" / "paper.yaml", ROOT)
    plan = job_endpoints(paper, [("judge_validation_verdicts_api", {"judge": "claude-2"})])
    assert plan == {"claude-haiku-4-5": ["judge_validation_verdicts_api claude-2"]}


def test_agreement_note_for_a_caption(tmp_path):
    assert jv.agreement_note("claude-2", jv.human_agreement("claude-2", tmp_path)) == (
        "human agreement of claude-2 as judged here: not measured yet; alpaca_eval's published claude: 65.3 % "
        "(people: 65.7 %)")
    (tmp_path / "judges" / "gpt-3.5-turbo").mkdir(parents=True)
    record = {"full_published_set": True, "rows": [
        {"evaluator": "gpt-3.5-turbo", "source": "measured here", "human_agreement": 61.234}]}
    (tmp_path / "judges" / "gpt-3.5-turbo" / "validation.json").write_text(json.dumps(record))
    assert jv.human_agreement("gpt-3.5-turbo", tmp_path) == 61.234
    assert jv.human_agreement_of(tmp_path / "judges" / "gpt-3.5-turbo" / "validation.json") == 61.234
    assert jv.agreement_note("gpt-3.5-turbo", 61.234).startswith("human agreement of gpt-3.5-turbo as judged here: 61.2 %; "
                                                                   "alpaca_eval's published chatgpt: 57.3 %")
