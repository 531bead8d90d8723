"""Precision and GPU checks by compute capability (alpacare.hardware), with the GPUs mocked:
what a V100, an A100 or a node mixing them would make the training and inference settings."""

import json

import pytest
import torch

from alpacare import hardware
from alpacare.stages.finetune import finetune, resolve_run
from conftest import fake_gpus
from tiny_llama import RECORDS

HP = {"method": "full", "epochs": 1, "lr": 1e-3, "batch_size": 4, "max_length": 96, "warmup_ratio": 0.0, "seed": 7}


@pytest.mark.parametrize("capabilities, precision, tf32", [
    ([(8, 0)], "bf16", True),             # A100
    ([(9, 0), (9, 0)], "bf16", True),     # two H100
    ([(7, 0)], "fp16", False),            # V100: bf16 only emulated, no tf32
    ([(7, 5)], "fp16", False),            # T4
    ([(8, 0), (7, 0)], "fp16", False),    # a node mixing generations: the oldest decides
    ([], "fp32", False),                  # no GPU
])
def test_precision_follows_the_compute_capability(monkeypatch, tmp_path, capabilities, precision, tf32):
    fake_gpus(monkeypatch, *capabilities)
    assert hardware.precision() == precision and hardware.tf32() is tf32
    run = resolve_run(HP, {"gpus": len(capabilities)}, 1, "backbone", tmp_path)
    assert (run["runtime"]["precision"], run["runtime"]["tf32"]) == (precision, tf32)
    assert hardware.dtype() == {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def test_a_run_on_the_cpu_stays_fp32_whatever_gpus_the_machine_has(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, (9, 0))
    rt = resolve_run(HP, {"gpus": 0, "micro_batch_size": 2}, 2, "backbone", tmp_path)["runtime"]
    assert (rt["gpu"], rt["precision"], rt["tf32"]) == (False, "fp32", False)


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(RECORDS))
    return [{"dataset": "tiny", "path": str(path)}]


def test_a_cpu_only_torch_stops_a_gpu_job_by_name(data, tmp_path):
    if torch.version.cuda is not None:
        pytest.skip("this torch is a CUDA build")
    with pytest.raises(hardware.GPUError, match=r"models\.tiny-7b\.gpus asks for 4 GPU\(s\), but this torch .* is a "
                                                r"CPU-only build: install a CUDA build of torch"):
        finetune(data, "unused", tmp_path / "tiny-7b", HP, {"gpus": 4, "micro_batch_size": 1})
    assert not (tmp_path / "tiny-7b.resume").exists()  # stopped before any work


def test_fewer_visible_gpus_than_asked_for_stop_the_job_by_name(monkeypatch, data, tmp_path):
    fake_gpus(monkeypatch, (8, 0), (8, 0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(hardware.GPUError, match=r"models\.tiny-7b\.gpus asks for 4 GPU\(s\), but this job sees 2 "
                                                r"\(CUDA_VISIBLE_DEVICES='0,1'\)"):
        finetune(data, "unused", tmp_path / "tiny-7b", HP, {"gpus": 4, "micro_batch_size": 1})
    assert not (tmp_path / "tiny-7b.resume").exists()


def test_a_test_clusters_fake_gpus_train_on_the_cpu_by_config_alone():
    """tests/slurm/up.sh offers GPUs that are device files: with cluster.fake_gpus the job
    still asks SLURM for them but trains on the CPU; without it, it would stop (above)."""
    import copy

    from alpacare import cluster
    from alpacare.config import load
    from alpacare.stages.finetune import runtime_settings
    from conftest import ROOT

    config = load(ROOT / "config.yaml")
    config["models"]["alpacare-smollm2"]["gpus"] = 1
    assert runtime_settings(config, "alpacare-smollm2")["gpus"] == 1
    fake = copy.deepcopy(config)
    fake["cluster"]["fake_gpus"] = True
    assert runtime_settings(fake, "alpacare-smollm2")["gpus"] == 0
    assert cluster.finetune_resources(fake, "alpacare-smollm2")["gpu"] == 1
