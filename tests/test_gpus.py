"""GPU jobs without a GPU: NVML answers what the job's GPUs are without initialising CUDA
(a stand-in libnvidia-ml built from tests/fake_nvml.c), so vLLM can start inside a job; a job
script survives `spawn`; local GPU jobs each claim devices of their own (alpacare.gpus), with
fake device ids; a GPU job that sees none stops by name."""

import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from alpacare import gpus, hardware, snake
from alpacare.llm.base import Request
from conftest import ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@pytest.fixture(scope="session")
def nvml_library(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in libnvidia-ml")
    library = tmp_path_factory.mktemp("nvml") / "libfake-nvml.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(ROOT / "tests" / "fake_nvml.c")], check=True)
    return str(library)


@pytest.fixture()
def nvml(nvml_library, monkeypatch):
    """fake(spec): this machine's GPUs as NVML reports them, e.g. "8.0:A100:40,8.0:A100:40"."""
    monkeypatch.setattr(hardware, "NVML_LIBRARY", nvml_library)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return lambda spec: monkeypatch.setenv("FAKE_NVML_GPUS", spec)


@pytest.fixture()
def cuda_init_recorder(monkeypatch):
    """torch.cuda as a CUDA machine's: asking it for a device's properties initialises CUDA,
    which torch.cuda.is_initialized() then says (as vLLM asks before it picks fork or spawn)."""
    state = {"initialised": False, "driver": False}

    def lazy_init():
        state["initialised"] = state["driver"] = True

    def is_available():  # torch asks the CUDA runtime, which initialises the driver: a forked child could not use it
        state["driver"] = True
        return True

    monkeypatch.setattr(torch.cuda, "_lazy_init", lazy_init)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: state["initialised"])
    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "_get_device_properties",
                        lambda i: types.SimpleNamespace(major=8, minor=0, name="A100"), raising=False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    return state


def test_nvml_reads_the_jobs_gpus_in_cuda_visible_devices_order(nvml, monkeypatch):
    nvml("8.0:A100:40,7.0:V100:16,9.0:H100:80")
    assert hardware.capabilities() == [(8, 0), (7, 0), (9, 0)] and hardware.precision() == "fp16"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert hardware.capabilities() == [(9, 0), (8, 0)] and hardware.precision() == "bf16"
    assert hardware.describe() == "H100 (9.0), A100 (8.0)"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1")
    assert hardware.visible_gpus() == 1 and hardware.precision() == "fp16"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert hardware.visible_gpus() == 0 and hardware.precision() == "fp32"


def test_vllm_starts_before_anything_initialises_cuda(nvml, cuda_init_recorder, monkeypatch, tmp_path, setup_state):
    """Once CUDA is initialised, vLLM starts its workers with spawn, which re-runs the job's
    script: the stand-in engine refuses to start then. A job does what a generate job does
    (alpacare.snake.setup with its 3 GPUs, then the engine); the engine's dtype and
    tensor-parallel size come from the GPUs all the same."""
    from alpacare.llm.vllm_local import VLLMProvider
    from test_generate import FakeVLLM
    from tiny_llama import build_tiny_llama
    from transformers import AutoTokenizer

    path = build_tiny_llama(tmp_path / "llama")
    vllm = FakeVLLM(AutoTokenizer.from_pretrained(path)).install(monkeypatch)
    started = vllm.LLM

    class Engine(started):
        def __init__(self, **kwargs):
            if torch.cuda.is_initialized():
                raise RuntimeError("CUDA was initialised before the engine started: vLLM's workers would be spawned, "
                                   "re-running the job's script")
            super().__init__(**kwargs)

    vllm.LLM = Engine
    nvml("8.0:A100:40,8.0:A100:40,8.0:A100:40")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    snake.setup(job(3))
    VLLMProvider(path).complete_batch([Request(model=path, prompt="Hi", max_tokens=2)])
    assert cuda_init_recorder == {"initialised": False, "driver": False}
    # bf16 from Ampere on; the tiny model's 4 heads (2 KV heads) split over 2 of the 3 GPUs
    assert (vllm.engines[0].kwargs["dtype"], vllm.engines[0].kwargs["tensor_parallel_size"]) == ("bfloat16", 2)


def snakemake_project(tmp_path: Path, snakefile: str, script: str) -> Path:
    (tmp_path / "Snakefile").write_text(textwrap.dedent(snakefile))
    (tmp_path / "job.py").write_text(textwrap.dedent(script))
    return tmp_path


def run_snakemake(project: Path, *args, env=None):
    import os

    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    result = subprocess.run([*SNAKEMAKE, *args], cwd=project, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, f"snakemake failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def test_a_snakemake_job_survives_a_spawned_child(tmp_path):
    """Snakemake's generated script has no __main__ guard: a spawned child (vLLM's workers once
    CUDA is up) would run the whole job again and fail while bootstrapping."""
    project = snakemake_project(tmp_path, '''
        rule job:
            output: "done.txt"
            script: "job.py"
        ''', '''
        import multiprocessing
        from pathlib import Path

        from alpacare.snake import setup

        setup(snakemake)
        child = multiprocessing.get_context("spawn").Process(target=Path(snakemake.output[0] + ".child").touch)
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"the spawned child failed with exit code {child.exitcode}")
        Path(snakemake.output[0]).write_text("ok")
        ''')
    run_snakemake(project, "--cores", "1")
    assert (project / "done.txt").read_text() == "ok" and (project / "done.txt.child").exists()


def test_two_local_gpu_jobs_never_share_a_device(tmp_path):
    """`snakemake --cores all --resources gpu=N` on a machine without SLURM: both jobs run at
    once (each waits for the other to start), each with a device of its own. The device ids
    are fake (CUDA_VISIBLE_DEVICES of the snakemake command; cluster.fake_gpus: no CUDA behind them)."""
    project = snakemake_project(tmp_path, '''
        config.setdefault("cluster", {"fake_gpus": True})

        rule all:
            input: "a.txt", "b.txt"

        rule job:
            output: "{name}.txt"
            resources: gpu=1
            script: "job.py"
        ''', '''
        import os
        import time
        from pathlib import Path

        from alpacare.snake import setup

        setup(snakemake)
        Path(snakemake.output[0] + ".started").touch()
        for _ in range(600):  # both jobs hold their devices at once
            if len(list(Path(".").glob("*.started"))) == 2:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("the other job never started alongside")
        Path(snakemake.output[0]).write_text(os.environ["CUDA_VISIBLE_DEVICES"])
        ''')
    run_snakemake(project, "--cores", "2", "--resources", "gpu=2", env={"CUDA_VISIBLE_DEVICES": "3,5"})
    assert sorted((project / f"{name}.txt").read_text() for name in "ab") == ["3", "5"]


CLAIM = """
import sys, time
from pathlib import Path
from alpacare import gpus
ids = gpus.claim(1, "job " + sys.argv[1], lock_dir=Path(sys.argv[2]), poll_seconds=0.05)
other_done = Path(sys.argv[3]).exists()
Path(sys.argv[4]).write_text(",".join(ids) + " " + str(other_done))
while len(sys.argv) > 5 and not Path(sys.argv[5]).exists():
    time.sleep(0.05)
Path(sys.argv[3]).touch() if len(sys.argv) > 5 else None
"""


def test_a_job_waits_for_a_device_another_job_holds(tmp_path):
    """More jobs than devices (an oversubscribed --resources gpu=): the second waits until the
    first exits, then gets its device; it never shares it."""
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "7"}
    locks, first_done, go = tmp_path / "locks", tmp_path / "first.done", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", CLAIM, "1", locks, first_done, tmp_path / "first", go], env=env)
    while not (tmp_path / "first").exists():
        assert first.poll() is None, "the first job ended before claiming"
    second = subprocess.Popen([sys.executable, "-c", CLAIM, "2", locks, first_done, tmp_path / "second"], env=env)
    go.touch()  # the first job may finish now; the second has been waiting for its device
    assert first.wait(timeout=120) == 0 and second.wait(timeout=120) == 0
    assert (tmp_path / "first").read_text() == "7 False"
    assert (tmp_path / "second").read_text() == "7 True"  # claimed only once the first had finished


def test_a_job_asking_more_gpus_than_the_machine_lends_stops_by_name(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(hardware.GPUError, match=r"rule generate asks for 4 GPU\(s\), but this machine lends local jobs 2 \(0, 1"):
        gpus.claim(4, "rule generate", lock_dir=tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # SLURM gave the job its devices: nothing to claim
    assert gpus.claim(1, "rule generate", lock_dir=tmp_path) is None and not list(tmp_path.iterdir())


def job(gpu: int, config: dict | None = None):
    """What a Snakemake script sees as `snakemake`, as far as alpacare.snake.setup reads it."""
    return types.SimpleNamespace(rule="generate", config=config or {}, log=[], threads=1, resources={"gpu": gpu})


@pytest.fixture()
def setup_state(monkeypatch):
    """alpacare.snake.setup sets process-wide state: put it back after the test."""
    for name in ("_rule", "_config"):
        monkeypatch.setattr(snake, name, getattr(snake, name))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)


def test_an_inference_job_that_sees_no_gpu_stops_rather_than_run_on_the_cpu(nvml, monkeypatch, setup_state):
    nvml("")  # a node whose driver answers, with no GPU for this job
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    with pytest.raises(hardware.GPUError, match=r"rule generate's resources.gpu asks for 1 GPU\(s\), but this job sees 0"):
        snake.setup(job(1))
    snake.setup(job(1, {"cluster": {"fake_gpus": True}}))  # a test cluster's fake GPUs: the CPU, as configured
    snake.setup(job(0))


def test_a_job_sees_the_gpus_it_asked_for(nvml, monkeypatch, setup_state):
    nvml("8.0:A100:40,8.0:A100:40")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    snake.setup(job(1))
    with pytest.raises(hardware.GPUError, match=r"asks for 2 GPU\(s\), but this job sees 1 \(CUDA_VISIBLE_DEVICES='1'\)"):
        snake.setup(job(2))


@pytest.mark.parametrize("heads, kv_heads, gpus, size", [
    (40, 40, 3, 2),   # LLaMA-13B on three GPUs: two of them
    (40, 40, 8, 8),
    (32, 8, 16, 16),  # more GPUs than KV heads: vLLM replicates each over two
    (64, 8, 6, 4),
    (4, 2, 3, 2),
    (32, 32, 0, 1),
])
def test_tensor_parallel_is_the_largest_count_the_heads_divide_by(heads, kv_heads, gpus, size):
    from alpacare.cluster import largest_tensor_parallel

    assert largest_tensor_parallel(heads, kv_heads, gpus) == size


def test_gpu_jobs_ask_for_one_node_and_a_count_vllm_can_use():
    from alpacare import cluster
    from alpacare.config import load

    config = load(ROOT / "configs" / "paper.yaml")
    config["cluster"]["gpu_memory_gb"] = 40
    config["backbones"]["llama-30b"] = {"hf": "huggyllama/llama-30b", "size": "30B"}  # 2 x 30B x 2 bytes / 40 GB: 3
    assert cluster.job_resources(config, "generate", "llama-30b")["gpu"] == 4
    job = cluster.job_resources(config, "generate", "llama-2-13b")
    assert (job["gpu"], job["nodes"]) == (2, 1)
    assert cluster.finetune_resources(config, next(m for m, s in config["models"].items() if s["gpus"]))["nodes"] == 1
    assert "nodes" not in cluster.job_resources(config, "generate", None)


def test_the_slurm_profile_requeues_preempted_jobs_with_the_plugins_own_setting():
    import dataclasses

    import yaml
    from snakemake_executor_plugin_slurm import ExecutorSettings

    profile = yaml.safe_load((ROOT / "slurm" / "profile.yaml").read_text())
    assert profile["slurm-requeue"] is True and "requeue" in {f.name for f in dataclasses.fields(ExecutorSettings)}
