"""Exact rebuilds, checked with `snakemake -n` after one real run: a change reruns exactly
the jobs whose output it decides. The run is cheap: imported outputs and two API judges
served by a local fake of the OpenAI API (tests/fakeapi.py)."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from conftest import ROOT, copy_project

pytestmark = pytest.mark.workflow


def outputs_file(path, items, text):
    path.write_text(json.dumps([{"instruction": t["instruction"], "output": f"{text} {t['instruction'][:30]}"} for t in items]))
    return path.as_uri()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A project with its own copy of the package (so a test may edit the code), run once."""
    from fakeapi import FakeAPI

    project = copy_project(tmp_path_factory.mktemp("rebuilds"))
    shutil.copytree(ROOT / "alpacare", project / "alpacare", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(project)}
    items = [json.loads(line) for line in (project / "testsets/medical_dozen.jsonl").read_text().splitlines()][:3]
    (project / "official").mkdir()
    with FakeAPI() as api:
        served = lambda model: {"provider": "openai", "model": model, "base_url": api.openai_url, "keyless": True}  # noqa: E731
        config = {
            "llm": {"cache": ".cache/llm.sqlite", "max_retries": 0},
            "backbones": {"unused": {"hf": "none/none"}},
            "llms": {"judge-a": served("model-a"), "judge-b": served("model-b")},
            "testsets": {"dozen": {"path": "testsets/medical_dozen.jsonl", "limit": 3}},
            "generators": {name: {"import": {"dozen": outputs_file(project / "official" / f"{name}.json", items, name)}}
                           for name in ("reference", "model-1", "model-2", "model-3")},
            "judges": {"a": {"llm": "judge-a", "max_tokens": 16}, "b": {"llm": "judge-b", "max_tokens": 16}},
            "evaluation": {"models": ["model-1", "model-2"], "references": ["reference"], "judges": ["a", "b"],
                           "testsets": ["dozen"]},
        }
        (project / "base.yaml").write_text(yaml.safe_dump(config))
        run(project, env, "--cores", "2", "--configfile", "base.yaml")
        asked = len(api.requests)
    return project, env, config, asked


def run(project, env, *args):
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=project, env=env, capture_output=True,
                            text=True, timeout=900)
    if result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result.stdout + result.stderr


def planned(project, env, config=None):
    """{rule: [outputs]} that `snakemake -n` would run."""
    args = ["-n"]
    if config is not None:
        (project / "changed.yaml").write_text(yaml.safe_dump(config))
        args += ["--configfile", "changed.yaml"]
    else:
        args += ["--configfile", "base.yaml"]
    out = run(project, env, *args)
    if "Job stats:" not in out:
        assert "Nothing to be done" in out, out[-2000:]
        return {}
    stats = out.split("Job stats:")[1].split("total")[0].splitlines()[3:]
    jobs = {line.split()[0]: [] for line in stats if line.strip()}
    for rule, output in re.findall(r"^(?:local)?rule (\w+):\n(?:    (?!output:).*\n)*    output: (.*)$", out, re.MULTILINE):
        jobs[rule].extend(o.strip() for o in output.split(","))
    return jobs


def test_the_first_run_judged_both_orders_with_the_papers_prompt(built):
    project, _, _, asked = built
    rows = [json.loads(x) for x in (project / "results/verdicts/a/reference/dozen/model-1.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["order"]) for r in rows) == [(i, o) for i in range(3) for o in ("model_first", "reference_first")]
    # the fake echoes the prompt, cut at 16 words: no verdict; the re-ask's reminder is echoed and parses
    assert all(r["replies"][0].startswith("echo: Decide which of two outputs") and r["preference"] == "a" for r in rows)
    assert asked == 2 * 2 * 6 * 2  # judges x models x judgments x (first ask + one re-ask)
    table = (project / "results/tables/winrates.csv").read_text().splitlines()
    assert len(table) == 1 + 4 and table[1].startswith("a,reference,dozen,model-1,50.00,")


def test_nothing_to_do_after_the_run(built):
    project, env, _, _ = built
    assert planned(project, env) == {}


def test_changing_one_judges_settings_reruns_exactly_its_verdicts_and_the_report(built):
    project, env, config, _ = built
    changed = json.loads(json.dumps(config))
    changed["judges"]["b"]["max_tokens"] = 50
    jobs = planned(project, env, changed)
    assert sorted(jobs) == ["all", "judge_api", "leaderboard", "report"]
    assert sorted(jobs["judge_api"]) == ["results/verdicts/b/reference/dozen/model-1.jsonl",
                                     "results/verdicts/b/reference/dozen/model-2.jsonl"]
    assert sorted(jobs["leaderboard"]) == ["results/alpaca_eval/b/reference/dozen/annotations.json",
                                           "results/alpaca_eval/b/reference/dozen/leaderboard.csv"]
    changed["judges"]["b"] = {**config["judges"]["b"], "prompt": "medical"}
    assert sorted(planned(project, env, changed)["judge_api"]) == sorted(jobs["judge_api"])


def test_switching_to_alpacares_protocol_rereads_the_reply_judges_verdicts_and_nothing_else(built):
    """Imported outputs stay; both reply judges' verdicts rerun (AlpaCare's scoring, no re-asks).
    Local generation and training are in tests/test_protocol.py (their params on the paper grid)."""
    project, env, config, _ = built
    jobs = planned(project, env, {**config, "protocol": "alpacare"})
    assert sorted(jobs) == ["all", "judge_api", "leaderboard", "report"]
    assert sorted(jobs["judge_api"]) == sorted(f"results/verdicts/{j}/reference/dozen/{m}.jsonl"
                                               for j in ("a", "b") for m in ("model-1", "model-2"))
    assert planned(project, env, {**config, "protocol": "project"}) == {}   # the default, named


def test_adding_a_model_adds_only_its_generation_verdicts_and_the_report(built):
    project, env, config, _ = built
    changed = json.loads(json.dumps(config))
    changed["evaluation"]["models"].append("model-3")
    jobs = planned(project, env, changed)
    assert sorted(jobs) == ["all", "generate_api", "judge_api", "leaderboard", "report"]
    assert jobs["generate_api"] == ["results/outputs/model-3/dozen.json"]
    assert sorted(jobs["judge_api"]) == ["results/verdicts/a/reference/dozen/model-3.jsonl",
                                     "results/verdicts/b/reference/dozen/model-3.jsonl"]


def test_adding_a_figure_draws_it_and_reruns_no_verdict(built):
    project, env, config, _ = built
    changed = json.loads(json.dumps(config))
    changed["figures"] = {"figure2": {"title": "Figure 2", "models": ["model-1", "model-2"], "references": ["reference"],
                                      "testsets": ["dozen"]}}   # judged by evaluation's judges: cells already judged
    jobs = planned(project, env, changed)
    assert sorted(jobs) == ["all", "figure"]
    assert jobs["figure"] == ["results/figures/figure2.png", "results/figures/figure2.svg", "results/tables/figure2.csv",
                              "results/tables/figure2.md", "results/tables/figure2.html"]


@pytest.mark.parametrize("module,expected", [
    ("winrates.py", {"all", "report", "leaderboard"}),         # the arithmetic: only what reports numbers
    ("leaderboard.py", {"all", "leaderboard"}),               # alpaca_eval's formats: only those files
    ("figures.py", set()),                                    # the paper's figures: none in this config
    ("judge.py", {"all", "judge_api", "report", "leaderboard"}),   # the prompt and the parser: every verdict
    ("llm/client.py", {"all", "judge_api", "report", "leaderboard"}),   # the LLM layer: every LLM job, not the imports
    ("testsets.py", {"all", "testset", "generate_api", "judge_api", "report", "leaderboard"}),
    ("llm/cache.py", set()), ("llm/breaker.py", set()), ("ledger.py", set()), ("shards.py", set()),  # plumbing
])
def test_editing_code_reruns_exactly_what_runs_it(built, module, expected):
    project, env, _, _ = built
    path = project / "alpacare" / module
    original, stat = path.read_text(), path.stat()
    try:
        path.write_text(original + "\n# an edit\n")
        assert set(planned(project, env)) == expected
    finally:
        path.write_text(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as it was: up to date again


def test_the_html_report_shows_the_numbers(built):
    import base64

    project, env, _, _ = built
    run(project, env, "--report", "report.html", "--configfile", "base.yaml")
    page = (project / "report.html").read_text()
    embedded = "".join(base64.b64decode(blob).decode("utf-8", "replace")
                       for blob in re.findall(r"data:text/html;[^,]*?base64,([A-Za-z0-9+/=]+)", page))
    win_rate = (project / "results/tables/winrates.csv").read_text().splitlines()[1].split(",")[4]
    assert f"<td class=num>{win_rate}</td>" in embedded
    assert "bootstrap 95" in page  # the table's caption
