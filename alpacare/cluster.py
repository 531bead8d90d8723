"""Where each job runs and what it asks of SLURM, decided from the config alone.

Two kinds of jobs: those that run a model on this machine's hardware (fine-tuning, local
generation, local judging, a local teacher or responder) go to SLURM with threads, memory,
time and GPUs that follow from the model's size; those that only call an HTTP API or do
bookkeeping run on the submit host, which has the internet (compute nodes often do not).
rules/cluster.smk turns these functions into rule directives; the `cluster:` config block
(schemas/config.schema.yaml) holds everything site-specific.
"""

from __future__ import annotations

import math
import re

# models below this many billion parameters run on CPU: a GPU would idle while it waits
GPU_FROM_B = 1.0
# the size the per-stage time limits are written for; larger models get proportionally more
REFERENCE_SIZE_B = 7.0
# when a backbone's size cannot be told from its config or name, plan for a 7B model
UNKNOWN_SIZE_B = 7.0
# bytes per parameter: bf16 weights on a GPU, float32 on a CPU (as alpacare.checkpoints loads them)
GPU_BYTES, CPU_BYTES = 2, 4
# a full fine-tune on CPU holds float32 weights, gradients and two Adam moments
CPU_FULL_TRAIN_BYTES = 16

_SIZE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([mMbB])(?![a-zA-Z])")


def parse_size(text: str) -> float | None:
    """Billions of parameters written in a name or hint: '7B', 'Llama-2-13b-hf', 'smollm2-135m'."""
    found = _SIZE.findall(text or "")
    if not found:
        return None
    number, unit = found[-1]
    return float(number) / (1000.0 if unit in "mM" else 1.0)


def backbone_size_b(config: dict, backbone: str) -> float:
    """A backbone's size: its `size:` hint, else read from its hub id, GGUF file or name."""
    spec = config["backbones"].get(backbone, {})  # a generator's own `path:` is no backbone entry
    for text in (spec.get("size"), spec.get("hf"), spec.get("gguf", {}).get("file"), backbone):
        size = parse_size(text) if text else None
        if size is not None:
            return size
    return UNKNOWN_SIZE_B


def llm_backbone(config: dict, llm: str) -> str | None:
    """The backbone a named LLM runs on this machine's hardware; None for API providers."""
    spec = config["llms"][llm]
    return spec["backbone"] if spec["provider"] == "local" else None


def generator_backbone(config: dict, generator: str) -> str | None:
    """The backbone whose weights a generator runs (a fine-tuned model runs its backbone's
    architecture); None for an API model or imported outputs."""
    spec = config["generators"][generator]
    if "model" in spec:
        return config["models"][spec["model"]]["backbone"]
    if "backbone" in spec:
        return spec["backbone"]
    if "llm" in spec:
        return llm_backbone(config, spec["llm"])
    return spec.get("path")  # an HF baseline by path or hub id runs here too; None: imported outputs only


def judge_backbone(config: dict, judge: str) -> str | None:
    return llm_backbone(config, config["judges"][judge]["llm"])


def runs_on_cluster(config: dict, section: str, name: str) -> bool:
    """Whether the job for `name` under `section` (generators, judges, llms) runs a local model."""
    find = {"generators": generator_backbone, "judges": judge_backbone, "llms": llm_backbone}[section]
    return find(config, name) is not None


def inference_gpus(cluster: dict, size_b: float) -> int:
    """GPUs for running a model: its bf16 weights plus as much again for the batch's KV cache."""
    if size_b < GPU_FROM_B:
        return 0
    return max(1, math.ceil(2 * size_b * GPU_BYTES / cluster["gpu_memory_gb"]))


def job_resources(config: dict, stage: str, backbone: str | None, attempt: int = 1) -> dict:
    """threads and SLURM resources for one inference job of `stage` (a key of cluster.runtime)
    running `backbone` (None: the job runs no model, e.g. an API call). GPUs follow from the
    model's size. A retry (attempt 2, 3...) asks for that many times the time, up to
    cluster.max_runtime, so a job killed at its time limit gets room to finish."""
    cluster = config["cluster"]
    if backbone is None:
        return {"threads": 1, "mem_mb": cluster["memory_mb"], "runtime": _minutes(cluster, "default", 1.0, attempt), "gpu": 0}
    size_b = backbone_size_b(config, backbone)
    gpus = inference_gpus(cluster, size_b)
    weights_gb = size_b * (GPU_BYTES if gpus else CPU_BYTES)
    return _resources(cluster, stage, size_b, gpus, host_gb=1.5 * weights_gb, attempt=attempt)  # loading reads the weights through a buffer


def finetune_resources(config: dict, model: str, attempt: int = 1) -> dict:
    """The same for fine-tuning `model`: its `gpus:` is the GPU count."""
    cluster, spec = config["cluster"], config["models"][model]
    size_b = backbone_size_b(config, spec["backbone"])
    gpus = spec["gpus"]
    if gpus:
        host_gb = size_b * GPU_BYTES * (1 + gpus)  # the loaded checkpoint plus one copy per GPU process
    elif spec["method"] == "full":
        host_gb = size_b * CPU_FULL_TRAIN_BYTES
    else:
        host_gb = 1.5 * size_b * CPU_BYTES
    return _resources(cluster, "finetune", size_b, gpus, host_gb, attempt)


def _resources(cluster: dict, stage: str, size_b: float, gpus: int, host_gb: float, attempt: int) -> dict:
    resources = {
        "threads": cluster["cpus_per_gpu"] * gpus if gpus else cluster["cpus"],
        "mem_mb": cluster["memory_mb"] + math.ceil(host_gb * 1024),
        "runtime": _minutes(cluster, stage, size_b, attempt),
        "gpu": gpus,
    }
    if gpus and cluster.get("gpu_model"):
        resources["gpu_model"] = cluster["gpu_model"]
    return resources


def slurm_settings(config: dict, gpus: int) -> dict:
    """The site's partition and account for a job (only the ones the config sets)."""
    cluster = config["cluster"]
    partition = (cluster.get("gpu_partition") or cluster.get("partition")) if gpus else cluster.get("partition")
    settings = {"slurm_partition": partition, "slurm_account": cluster.get("account"), "qos": cluster.get("qos")}
    return {k: v for k, v in settings.items() if v}


def _minutes(cluster: dict, stage: str, size_b: float, attempt: int) -> int:
    minutes = cluster["runtime"][stage] * max(1.0, size_b / REFERENCE_SIZE_B) * max(1, attempt)
    if cluster.get("max_runtime"):
        minutes = min(minutes, cluster["max_runtime"])
    return math.ceil(minutes)
