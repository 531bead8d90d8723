"""The reviewer's path (configs/released.yaml), offline: AlpaCare's released outputs from
../shared/reference instead of GitHub, a handful of items, and the local log-prob judge.
Then a clean results/ is rebuilt from the cache alone, byte for byte, without a call."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alpacare.ledger import summarize
import yaml

from conftest import REFERENCE, copy_project

pytestmark = pytest.mark.workflow

REPO = "https://raw.githubusercontent.com/XZhang97666/AlpaCare/master/data/"
ITEMS = 2
REFERENCES = ["claude-2"]  # one of the four keeps the test short: claude-2's iCliniq file has the odd format


def local_copy(url: str) -> Path:
    """Where ../shared/reference keeps the file AlpaCare publishes at `url`."""
    rel = url.removeprefix(REPO)
    parts = rel.split("/")
    if parts[0] == "reference_outputs":      # reference_outputs/gpt-4/iCliniq_output.jsonl
        return REFERENCE / "reference_outputs" / f"{parts[1]}.{parts[2]}"
    if parts[0] == "model_ouputs":           # model_ouputs/AlpaCare-7b/iCliniq/seed_0.json
        return REFERENCE / "model_outputs" / f"{parts[1]}.{parts[2]}.{parts[3]}"
    return REFERENCE / rel


def snakemake(project, *args):
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=project, capture_output=True, text=True,
                            timeout=1200)
    if result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def artifacts(project) -> dict:
    """Every file of results/ but the logs and the ledger's shards (which hold times) and Snakemake's own markers."""
    root = project / "results"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in ("logs", "ledger")
            and not p.name.startswith(".snakemake")}


def test_released_outputs_rebuild_figure_2_offline_and_replay_byte_identically(tmp_path, smollm2_dir):
    if not (REFERENCE / "model_outputs" / "AlpaCare-7b.iCliniq.seed_0.json").exists():
        pytest.skip(f"reference data not present: {REFERENCE}")
    project = copy_project(tmp_path)
    config = yaml.safe_load((project / "configs/released.yaml").read_text())
    for spec in config["testsets"].values():
        spec["url"] = local_copy(spec["url"]).as_uri()
        spec["limit"] = ITEMS
    available = []
    for name, spec in config["generators"].items():
        files = {t: local_copy(url) for t, url in spec["import"].items()}
        if all(f.exists() for f in files.values()):
            spec["import"] = {t: f.as_uri() for t, f in files.items()}
            available.append(name)
    assert {"alpacare-7b", "gpt-4", "claude-2", "gpt-3.5-turbo", "text-davinci-003"} <= set(available)
    assert config["evaluation"]["references"] == ["text-davinci-003", "gpt-3.5-turbo", "gpt-4", "claude-2"]
    config["evaluation"]["models"] = [m for m in config["evaluation"]["models"] if m in available]
    config["evaluation"]["references"] = REFERENCES
    config["evaluation"]["judges"] = ["smollm2-logprob"]   # the judge the user names: here the offline one
    (project / "released.yaml").write_text(yaml.safe_dump(config))
    # the judge's backbone as this test session converted it (the rebuild below converts its own)
    shutil.copytree(smollm2_dir, project / "results/models/smollm2-135m")

    snakemake(project, "--cores", "2", "--configfile", "released.yaml")
    r = project / "results"
    for testset in ("icliniq", "medinstruct-test"):
        items = [json.loads(line) for line in (r / f"testsets/{testset}.jsonl").read_text().splitlines()]
        assert len(items) == ITEMS
        for generator in ["alpacare-7b", *REFERENCES]:
            outputs = json.loads((r / f"outputs/{generator}/{testset}.json").read_text())
            assert [o["id"] for o in outputs] == [t["id"] for t in items] and all(o["output"].strip() for o in outputs)
    icliniq = json.loads((r / "outputs/alpacare-7b/icliniq.json").read_text())
    assert icliniq[0]["instruction"].startswith("If you are a doctor") and icliniq[0]["input"].startswith("Hello doctor")
    table = (r / "tables/winrates.csv").read_text().splitlines()
    assert len(table) == 1 + 2 * len(REFERENCES)
    assert {line.split(",")[2] for line in table[1:]} == {"icliniq", "medinstruct-test"}
    assert (r / "tables/winrates_by_difficulty.csv").read_text().count("medinstruct-test") >= 1
    first = artifacts(project)
    assert {"figures/winrates.png", "figures/winrates.svg", "tables/winrates.tex", "tables/winrates.html"} <= set(first)

    # the reviewer without keys: a clean results/ (the backbone converted anew), answered from the cache alone
    shutil.rmtree(r)
    config["llm"]["replay_only"] = True
    (project / "replay.yaml").write_text(yaml.safe_dump(config))
    snakemake(project, "--cores", "2", "--configfile", "replay.yaml")
    judged = [row for row in summarize(r / "ledger") if row["rule"] == "judge"]
    assert len(judged) == 1 and judged[0]["calls"] == 0
    assert judged[0]["cache_hits"] == 2 * len(REFERENCES) * ITEMS * 2
    again = artifacts(project)
    assert sorted(again) == sorted(first)
    assert [name for name in first if first[name] != again[name]] == []
