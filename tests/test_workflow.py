"""Real snakemake runs in a fresh copy of the project."""

import glob
import json
import re
import subprocess
import sys

import pytest
import yaml

from alpacare import ledger as ledger_file
from conftest import ROOT, copy_project

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(project, *args, check=True):
    result = subprocess.run([*SNAKEMAKE, *args], cwd=project, capture_output=True, text=True, timeout=1800)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def tiny_config(project):
    """The default config, shrunk to the fewest calls that still cross every stage."""
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["selfinstruct"].update(requests=1, tasks_per_request=6)
    config["selfinstruct"]["response_sampling"]["max_tokens"] = 24
    config["models"]["alpacare-smollm2"].update(epochs=1, batch_size=4, micro_batch_size=2, max_length=128)
    config["testsets"]["medical-dozen"]["limit"] = 3
    config["generation"]["max_new_tokens"] = 16
    (project / "tiny.yaml").write_text(yaml.safe_dump(config))
    return "tiny.yaml"


def ledger(project):
    return ledger_file.read(project / "results" / "ledger")


@pytest.fixture(scope="module")
def run(tiny_run):  # conftest.py: shared with tests/test_slurm.py
    return tiny_run


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_stage_leaves_its_artifact(run):
    project, _ = run
    r = project / "results"
    tasks = read_jsonl(r / "selfinstruct/tasks.raw.jsonl")
    rejects = read_jsonl(r / "selfinstruct/rejects.jsonl")
    assert len(tasks) + len(rejects) == 6 and len(tasks) >= 1
    assert set(tasks[0]) >= {"type", "topic", "view", "difficulty", "instruction", "input", "request", "slot"}
    report = json.loads((r / "selfinstruct/dedup_report.json").read_text())
    kept = read_jsonl(r / "selfinstruct/tasks.jsonl")
    assert report["candidates"] == len(tasks) and report["kept"] == len(kept)
    responses = read_jsonl(r / "selfinstruct/responses.jsonl")
    assert len(responses) == len(kept) and all("output" in x for x in responses)
    training = json.loads((r / "data/medinstruct.json").read_text())
    assert training and all(set(x) >= {"instruction", "input", "output"} for x in training)
    checkpoint = r / "checkpoints/alpacare-smollm2"
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / "adapter/adapter_config.json").exists()
    summary = json.loads((checkpoint / "train_summary.json").read_text())
    assert summary["examples"] + summary["dropped_too_long"] == len(training) and summary["examples"] >= 1
    assert summary["hyperparameters"]["method"] == "lora" and summary["last_loss"] > 0
    for generator in ("alpacare-smollm2", "smollm2-base", "smollm2-chat"):
        outputs = json.loads((r / f"outputs/{generator}/medical-dozen.json").read_text())
        assert [o["id"] for o in outputs] == [0, 1, 2]
        assert all(o["generator"] == generator and isinstance(o["output"], str) for o in outputs)
    for model in ("alpacare-smollm2", "smollm2-base"):
        verdicts = read_jsonl(r / f"verdicts/smollm2-logprob/smollm2-chat/medical-dozen/{model}.jsonl")
        assert sorted((v["id"], v["order"]) for v in verdicts) == sorted(
            (i, o) for i in range(3) for o in ("reference_first", "model_first"))
        assert all(v["model_score"] in (0.0, 0.5, 1.0) and len(v["logprobs"]) == 2 for v in verdicts)
    table = (r / "tables/winrates.csv").read_text().splitlines()
    assert table[0].startswith("judge,reference,testset,model,win_rate") and len(table) == 3
    assert "| smollm2-logprob | smollm2-chat | medical-dozen |" in (r / "tables/winrates.md").read_text()
    assert (r / "figures/winrates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def readme_artifacts() -> list[str]:
    """Glob patterns of the files the README's "What you get" table names for the default run
    (rows marked as coming from the paper's configs or on request left out): `{name}` is any
    name, `{a,b}` either, and a bare file name in a row sits beside the row's first path (in a
    folder's row, the file names its description lists are in that folder)."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## What you get")[1].split("\n\n")[2]
    patterns = []
    for row in table.splitlines()[2:]:
        cell, what = row.split(" | ", 1)
        if "(paper configs)" in what or "(on request" in what:
            continue
        paths = re.findall(r"`([^`]+)`", cell)
        folder = paths[0].rstrip("/") if paths[0].endswith("/") else paths[0].rsplit("/", 1)[0]
        if paths[0].endswith("/"):
            paths += [name for name in re.findall(r"`([^`]+)`", what) if re.fullmatch(r"[\w{},-]+\.[\w{},.]+", name)]
        for path in paths:
            full = path if "/" in path else f"{folder}/{path}"
            for expanded in braces(full):
                patterns.append(re.sub(r"\{[^}]*\}", "*", expanded))
    return patterns


def braces(path: str) -> list[str]:
    found = re.search(r"\{([^}]*,[^}]*)\}", path)
    if not found:
        return [path]
    return [x for option in found.group(1).split(",") for x in braces(path[:found.start()] + option + path[found.end():])]


def test_every_file_the_readme_table_names_is_made_by_the_default_run(run):
    project, _ = run
    patterns = readme_artifacts()
    assert len(patterns) >= 30 and "results/stats/*/verbs.png" in patterns
    missing = [p for p in patterns if not glob.glob(str(project / p))]
    assert not missing, f"the README's table names files the run did not make: {missing}"
    skipped = [str(p.relative_to(project)) for p in (project / "results").rglob("*.md") if "skipped" in p.read_text().lower()]
    assert not skipped, f"a first run should be complete, but these say they were skipped: {skipped}"


def test_second_run_does_nothing(run):
    project, configfile = run
    result = snakemake(project, "-n", "--configfile", configfile)
    assert "Nothing to be done" in result.stdout + result.stderr


def test_deleted_output_is_rebuilt_from_the_cache(run):
    project, configfile = run
    responses = project / "results/selfinstruct/responses.jsonl"
    before = responses.read_text()
    responses.unlink()
    snakemake(project, "results/selfinstruct/responses.jsonl", "--cores", "2", "--configfile", configfile)
    assert responses.read_text() == before
    last = max((row for row in ledger(project) if row["stage"] == "respond"), key=lambda row: row["time"])
    assert last["calls"] == 0 and last["cache_hits"] == len(before.splitlines())


def test_changing_a_judge_setting_reruns_only_judging(run):
    project, configfile = run
    config = yaml.safe_load((project / configfile).read_text())
    config["judges"]["smollm2-logprob"]["tie_margin"] = 0.5
    (project / "judge.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(project, "-n", "--configfile", "judge.yaml")
    jobs = [line.split()[0] for line in result.stdout.split("Job stats:")[1].split("total")[0].splitlines()[3:] if line.strip()]
    assert sorted(jobs) == ["all", "judge", "leaderboard", "report"]


def test_config_typo_fails_before_any_job(tmp_path):
    project = copy_project(tmp_path)
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["selfinstruct"]["tasks_per_reqest"] = 12
    (project / "typo.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(project, "--cores", "1", "--configfile", "typo.yaml", check=False)
    assert result.returncode != 0
    assert "unknown key 'selfinstruct.tasks_per_reqest'" in result.stdout + result.stderr
    assert not (project / "results").exists()


def test_malformed_seed_names_file_item_and_field(tmp_path):
    project = copy_project(tmp_path)
    seeds = json.loads((project / "seeds/medical_seed_tasks.json").read_text())
    seeds[3]["difficulty"] = 9
    (project / "seeds/bad.json").write_text(json.dumps(seeds))
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["seeds"] = ["seeds/bad.json"]
    (project / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(project, "results/selfinstruct/seeds.jsonl", "--cores", "1", "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0  # found by the pre-flight check, before any job
    assert "seeds/bad.json: item 3: field 'difficulty' must be 1-5, got 9" in result.stdout + result.stderr
    assert not (project / "results").exists()


EXPECTED_PAPER_JOBS = {
    "backbone": 11,       # LLaMA 7B/13B, LLaMA-2 7B/13B, and the baselines' checkpoints: medAlpaca 7B/13B,
                          # PMC-LLaMA 7B/13B, Baize-Healthcare (LLaMA-7B + its adapter), Alpaca-native 7B and 13B
    "seeds": 1,
    "generate_tasks": 1,
    "dedup": 1,
    "respond": 1,
    "dataset": 3,         # the released MedInstruct-52k and Alpaca 52k, and the regeneration (ablation)
    "dataset_card": 1,
    "stats": 2,           # the released MedInstruct-52k and the regeneration
    "verbs": 2,
    "finetune": 9,        # 4 backbones x 2 released training sets, plus the ablation
    "testset": 3,         # MedInstruct-test, iCliniq, AlpacaFarm
    "generate": 42,       # Figures 2-6 and the ablation: 14 local generators, on GPU nodes
    "generate_api": 15,   # imported: 4 references and ChatDoctor x 3 test sets
    "judge_api": 252,     # Figures 2-6, 10, 11 and the LLaMA-2 13B addition (240 cells) and the ablation (12)
    "figure": 8,          # Figures 2-6, the appendix's 10 and 11, and the LLaMA-2 13B addition
    "report": 1,
    "leaderboard": 24,    # alpaca_eval's files: gpt-3.5-turbo and claude-2 x 4 references x 3 test sets
    "usmle_questions": 1,
    "usmle_generation": 14,  # our 8 models and medAlpaca's 6 table rows (Alpaca 13b naive added), on GPU nodes
    "usmle_loglik": 14,
    "usmle_report": 1,
    "judge_preferences": 1,   # judge_validation: the judges' position and length preferences on the grid
    "all": 1,
}


def test_paper_grid_dry_run(tmp_path):
    project = copy_project(tmp_path)
    result = snakemake(project, "-n", "--configfile", "configs/paper.yaml")
    stats = result.stdout.split("Job stats:")[1].split("total")[0]
    counts = {}
    for line in stats.splitlines()[3:]:
        if line.strip():
            name, count = line.split()
            counts[name] = int(count)
    assert counts == EXPECTED_PAPER_JOBS


def test_api_outage_fails_naming_the_item_and_a_rerun_asks_only_what_failed(tmp_path):
    from fakeapi import FakeAPI

    project = copy_project(tmp_path)
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["llm"].update(max_concurrency=1, max_retries=1)
    config["testsets"]["medical-dozen"]["limit"] = 3
    target = "results/outputs/api-reference/medical-dozen.json"
    with FakeAPI() as api:
        config["llms"]["served"] = {"provider": "openai", "model": "served-model", "base_url": api.openai_url, "keyless": True}
        config["generators"]["api-reference"] = {"llm": "served"}
        (project / "api.yaml").write_text(yaml.safe_dump(config))
        for _ in range(2):  # the first item asked (a job asks in an order of its own) meets an outage through its one retry
            api.fail(503, "upstream overloaded", headers={"retry-after": "0"})
        failed = snakemake(project, target, "--cores", "1", "--configfile", "api.yaml", check=False)
        assert failed.returncode != 0 and not (project / target).exists()
        log = (project / "results/logs/generate/api-reference/medical-dozen.log").read_text()
        assert "1 api-reference generation call(s) failed" in log and re.search(r"item \d: gave up after 2 attempts", log)
        assert "503: upstream overloaded" in log
        assert len(api.requests) == 4  # the failed item twice, the others once
        snakemake(project, target, "--cores", "1", "--configfile", "api.yaml")
        assert len(api.requests) == 5  # only the failed item was asked again
    outputs = json.loads((project / target).read_text())
    assert [o["id"] for o in outputs] == [0, 1, 2] and all(o["output"] for o in outputs)
    assert all(o["generator"] == "api-reference" for o in outputs)
