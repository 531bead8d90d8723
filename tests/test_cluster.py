"""Where jobs run and what they ask of SLURM (alpacare.cluster), and the dry-run that shows it."""

import copy
import re
import subprocess
import sys

import pytest

from alpacare import cluster
from alpacare.config import ConfigError, load, validate
from conftest import ROOT, copy_project


@pytest.fixture(scope="module")
def paper():
    return load(ROOT / "configs" / "paper.yaml")


@pytest.fixture(scope="module")
def default():
    return load(ROOT / "config.yaml")


@pytest.mark.parametrize("text, size", [
    ("7B", 7.0), ("13B", 13.0), ("135M", 0.135), ("1.5B", 1.5),
    ("meta-llama/Llama-2-13b-hf", 13.0), ("huggyllama/llama-7b", 7.0), ("llama-2-7b", 7.0),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", 0.135), ("smollm2-135m", 0.135), ("gpt2", None), ("", None),
])
def test_size_is_read_from_a_hint_or_a_name(text, size):
    assert cluster.parse_size(text) == size


def test_a_size_hint_wins_over_the_name(paper):
    config = copy.deepcopy(paper)
    config["backbones"]["llama-7b"]["size"] = "65B"
    assert cluster.backbone_size_b(config, "llama-7b") == 65.0
    config["backbones"]["mystery"] = {"hf": "org/mystery"}
    assert cluster.backbone_size_b(config, "mystery") == cluster.UNKNOWN_SIZE_B


def test_smollm2_asks_for_no_gpu_and_a_13b_model_asks_for_more_than_a_7b(default, paper):
    small = cluster.job_resources(default, "generate", "smollm2-135m")
    assert small["gpu"] == 0 and small["threads"] == default["cluster"]["cpus"] and "gpu_model" not in small
    seven = cluster.job_resources(paper, "generate", "llama-2-7b")
    thirteen = cluster.job_resources(paper, "generate", "llama-2-13b")
    assert 1 <= seven["gpu"] < thirteen["gpu"]
    assert seven["mem_mb"] < thirteen["mem_mb"] and seven["runtime"] < thirteen["runtime"]
    assert seven["threads"] == paper["cluster"]["cpus_per_gpu"] * seven["gpu"]
    train7 = cluster.finetune_resources(paper, "alpacare-llama-2-7b")
    train13 = cluster.finetune_resources(paper, "alpacare-llama-2-13b")
    assert train7["mem_mb"] < train13["mem_mb"] and train7["runtime"] < train13["runtime"]


def test_a_models_gpus_reach_its_training_job(default):
    config = copy.deepcopy(default)
    assert cluster.finetune_resources(config, "alpacare-smollm2")["gpu"] == 0
    config["models"]["alpacare-smollm2"]["gpus"] = 3
    config["cluster"]["gpu_model"] = "a100"
    job = cluster.finetune_resources(config, "alpacare-smollm2")
    assert job["gpu"] == 3 and job["gpu_model"] == "a100" and job["threads"] == 3 * config["cluster"]["cpus_per_gpu"]


def test_bigger_gpus_mean_fewer_of_them(paper):
    config = copy.deepcopy(paper)
    config["cluster"]["gpu_memory_gb"] = 80
    assert cluster.job_resources(config, "generate", "llama-2-13b")["gpu"] == 1


def test_a_retry_asks_for_more_time_up_to_the_partition_limit(paper):
    config = copy.deepcopy(paper)
    first = cluster.job_resources(config, "judge", "llama-7b", attempt=1)["runtime"]
    assert cluster.job_resources(config, "judge", "llama-7b", attempt=2)["runtime"] == 2 * first
    config["cluster"]["max_runtime"] = first + 10
    assert cluster.job_resources(config, "judge", "llama-7b", attempt=3)["runtime"] == first + 10


def test_every_retry_fits_the_partitions_time_limit(paper, monkeypatch):
    """The issue's case: a 24 h fine-tune on a 24 h partition; the profile's retries asked 2x
    and 3x, capped only by max_runtime (48 h), so the retry pended for ever. With the limits
    sinfo gives (partitions.check, when the SLURM run starts) every attempt fits."""
    from alpacare import partitions

    config = copy.deepcopy(paper)
    config["cluster"].update(partition="cpu", gpu_partition="gpu")
    monkeypatch.setattr(cluster, "_time_limits", {})
    sinfo = "g01|gpu|64|512000|gpu:a100:8|1-00:00:00|idle\nc01|cpu*|64|257000|(null)|2-00:00:00|idle\n"
    first = cluster.finetune_resources(config, "alpacare-llama-2-7b", attempt=1)
    assert first["runtime"] == 1440 and cluster.finetune_resources(config, "alpacare-llama-2-7b", attempt=2)["runtime"] == 2880
    jobs = [partitions.Job("rule finetune (model=alpacare-llama-2-7b)", "finetune", first["threads"], first["mem_mb"],
                           first["runtime"], first["gpu"], None, "gpu")]
    partitions.check(jobs, sinfo)
    for attempt in (1, 2, 3):
        assert cluster.finetune_resources(config, "alpacare-llama-2-7b", attempt=attempt)["runtime"] == 1440
    # a CPU job's retries on the 48 h partition still get their 2x and 3x
    assert [cluster.job_resources(config, "judge", "smollm2-135m", attempt=a)["runtime"] for a in (1, 2, 3)] == [240, 480, 720]


def test_api_jobs_run_no_model_and_stay_on_the_submit_host(paper):
    assert cluster.job_resources(paper, "generate", None)["gpu"] == 0
    assert not cluster.runs_on_cluster(paper, "generators", "gpt-4")
    assert not cluster.runs_on_cluster(paper, "generators", "text-davinci-003")  # imported outputs
    assert cluster.runs_on_cluster(paper, "generators", "alpacare-llama-7b")
    assert not cluster.runs_on_cluster(paper, "judges", "claude-2")
    assert not cluster.runs_on_cluster(paper, "llms", paper["selfinstruct"]["teacher"])


def test_partition_and_account_only_when_set(paper):
    config = copy.deepcopy(paper)
    assert cluster.slurm_settings(config, gpus=1) == {}
    config["cluster"].update(partition="cpu", account="lab")
    assert cluster.slurm_settings(config, gpus=0) == {"slurm_partition": "cpu", "slurm_account": "lab"}
    assert cluster.slurm_settings(config, gpus=2)["slurm_partition"] == "cpu"
    config["cluster"]["gpu_partition"] = "gpu"
    assert cluster.slurm_settings(config, gpus=2)["slurm_partition"] == "gpu"


def test_cluster_block_is_validated(default):
    config = copy.deepcopy(default)
    config["cluster"]["runtime"]["finetun"] = 60
    with pytest.raises(ConfigError, match="cluster.runtime.finetun"):
        validate(config, source="config.yaml")
    config = copy.deepcopy(default)
    config["cluster"]["gpu_model"] = "'a100'"
    with pytest.raises(ConfigError, match="cluster.gpu_model"):
        validate(config, source="config.yaml")
    config = copy.deepcopy(default)
    config["backbones"]["smollm2-135m"]["size"] = "135 million"
    with pytest.raises(ConfigError, match="backbones.smollm2-135m.size"):
        validate(config, source="config.yaml")


def dry_run_jobs(text):
    """(rule, local?, resources) for each job a dry-run prints."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        head = re.match(r"(local)?rule (\w+):", block)
        resources = re.search(r"resources: (.*)", block)
        if head and resources:
            jobs.append((head.group(2), dict(kv.split("=", 1) for kv in resources.group(1).split(", "))))
    return jobs


@pytest.mark.workflow
def test_paper_grid_through_the_slurm_profile_shows_every_jobs_resources(tmp_path):
    project = copy_project(tmp_path)
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--profile", "slurm", "--configfile", "configs/paper.yaml"],
                            cwd=project, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using profile slurm" in result.stdout + result.stderr
    jobs = dry_run_jobs(result.stdout)
    assert len(jobs) == int(result.stdout.split("total")[1].split()[0])
    gpus = {}
    for rule, resources in jobs:
        assert "mem_mb" in resources and "runtime" in resources, rule
        gpus.setdefault(rule, set()).add(int(resources.get("gpu", 0)))
    assert gpus["finetune"] == {4, 8}              # the models' gpus: 7B on 4, 13B on 8 (AlpaCare)
    assert gpus["generate"] == {1, 2}              # 7B and 13B models at 40 GB per GPU
    for rule in ("generate_api", "judge_api", "generate_tasks", "respond", "backbone", "dataset", "testset", "report"):
        assert gpus[rule] == {0}, rule


def test_a_training_jobs_memory_request_follows_what_loading_really_costs(paper):
    """FSDP: rank 0 alone reads the checkpoint, in fp32 for a full fine-tune (the master
    copy); every GPU process adds its own runtime. Not one bf16 copy per process."""
    assert paper["cluster"]["memory_mb"] == 8000
    # 7B, 4 GPUs: 7e9 x 4 bytes (fp32, read once) + 4 x 3 GB of runtime = 40 GB above the base
    assert cluster.finetune_resources(paper, "alpacare-llama-2-7b")["mem_mb"] == 8000 + 40 * 1024
    # 13B, 8 GPUs: 52 GB + 8 x 3 GB
    assert cluster.finetune_resources(paper, "alpacare-llama-2-13b")["mem_mb"] == 8000 + 76 * 1024
    lora = copy.deepcopy(paper)
    lora["models"]["alpacare-llama-2-7b"].update(method="lora", gpus=1)  # a 16-bit base, one process
    assert cluster.finetune_resources(lora, "alpacare-llama-2-7b")["mem_mb"] == 8000 + (14 + 3) * 1024


def test_7b_on_40_gb_gpus_trains_with_activation_checkpointing_and_without_it_on_80(paper):
    from alpacare.stages.finetune import runtime_settings

    plan = cluster.finetune_gpu_plan(paper, "alpacare-llama-2-7b")  # 4 x 4 x 1024 tokens, 4 GPUs of 40 GB
    assert plan["gradient_checkpointing"] and plan["gpu_gb"] <= cluster.USABLE_GPU_FRACTION * 40
    assert "without it" in plan["why"] and "cluster.gpu_memory_gb 40" in plan["why"]
    assert runtime_settings(paper, "alpacare-llama-2-7b")["gradient_checkpointing"] is True
    big = copy.deepcopy(paper)
    big["cluster"]["gpu_memory_gb"] = 80
    assert not cluster.finetune_gpu_plan(big, "alpacare-llama-2-7b")["gradient_checkpointing"]
    assert runtime_settings(big, "alpacare-llama-2-7b")["gradient_checkpointing"] is False
    # 13B on 8 x 40 GB: the paper's own setting, and it fits with it
    assert cluster.finetune_gpu_plan(paper, "alpacare-llama-2-13b")["gradient_checkpointing"]


def test_a_model_that_cannot_fit_its_gpus_stops_before_submission_naming_what_would(paper):
    config = copy.deepcopy(paper)
    config["models"]["alpacare-llama-2-7b"]["gpus"] = 1  # 7B full fine-tune on one 40 GB GPU
    with pytest.raises(ConfigError, match=r"models\.alpacare-llama-2-7b: training 7B parameters \(full\) on 1 GPU\(s\) "
                                          r"needs ~\d+ GB per GPU even with activation checkpointing .*cluster\.gpu_memory_gb "
                                          r"40: set models\.alpacare-llama-2-7b\.gpus to at least 4 "):
        cluster.finetune_resources(config, "alpacare-llama-2-7b")
    config["models"]["alpacare-llama-2-7b"].update(method="lora-8bit", micro_batch_size=64)  # more GPUs would not help
    with pytest.raises(ConfigError, match=r"cluster\.gpu_memory_gb 40: lower micro_batch_size"):
        cluster.finetune_gpu_plan(config, "alpacare-llama-2-7b")
