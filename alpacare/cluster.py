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
# a full fine-tune holds float32 weights, gradients and two Adam moments (on GPUs: sharded over them)
FULL_TRAIN_BYTES = 16

# Host memory of a training job on GPUs. One process reads the checkpoint (FSDP and ZeRO-3:
# rank 0, the others receive their shards; one GPU: the only process) and holds it whole in
# the dtype it loads: full fine-tunes fp32 (the master copy), LoRA the 16-bit base, 8/4-bit
# LoRA the 16-bit tensors on their way to the GPU. Rank 0 gathers the trained model once more
# at the end, no bigger. Every GPU process also carries its own torch/CUDA runtime.
LOAD_BYTES = {"full": 4, "lora": 2, "lora-8bit": 2, "lora-4bit": 2}
PROCESS_GB = 3.0

# GPU memory of a training job, per GPU (finetune_gpu_plan). Model states in bytes per parameter:
# full fine-tunes FULL_TRAIN_BYTES, sharded over the GPUs (FSDP full shard); LoRA a frozen base
# (16-bit, sharded; 8/4-bit: a whole quantised copy on every GPU) with negligible adapters.
LORA_BASE_BYTES = {"lora": 2, "lora-8bit": 1, "lora-4bit": 0.5}
# activations in bytes per token, layer and hidden unit: 34 without activation checkpointing
# (16-bit, fused attention: Korthikanti et al. 2022, no sequence-squared term); with it, each
# layer's input (2) plus one layer's full set while it is recomputed
ACTIVATION_BYTES, CHECKPOINTED_BYTES = 34, 2
# the logits of a token, per word of the vocabulary: fp32, with their log-softmax and gradient
LOGIT_BYTES_PER_WORD = 4 * 3
# the vocabulary where neither a `vocab_size:` hint nor the prepared backbone tells it: LLaMA
# and Llama 2 have 32,000 words (Llama 3: 128,256, four times the logits)
DEFAULT_VOCAB = 32_000
# of a GPU's memory, what training may plan for: the CUDA context and the allocator's fragmentation take the rest
USABLE_GPU_FRACTION = 0.85

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
    needed = max(1, math.ceil(2 * size_b * GPU_BYTES / cluster["gpu_memory_gb"]))
    # a power of two: vLLM splits the attention heads evenly over its GPUs, and every LLaMA's
    # head count (32, 40, 52, 64) divides by 2 and 4; three GPUs would leave one idle
    return 1 << (needed - 1).bit_length()


def largest_tensor_parallel(heads: int, kv_heads: int, gpus: int) -> int:
    """vLLM's tensor-parallel size on `gpus` GPUs: the largest count the attention heads divide
    by whose KV heads split evenly too (or are replicated evenly: vLLM copies each KV head to
    tp / kv_heads GPUs when tp exceeds them). 40 heads (13B) on 3 GPUs: 2."""
    return max(t for t in range(1, max(1, gpus) + 1)
               if heads % t == 0 and (kv_heads % t == 0 or t % kv_heads == 0))


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
    """The same for fine-tuning `model`: its `gpus:` is the GPU count; host memory is what
    loading really costs (LOAD_BYTES, one reading process) plus each GPU process's runtime.
    A model whose training cannot fit the GPUs' memory (cluster.gpu_memory_gb) stops here,
    before anything is submitted (finetune_gpu_plan)."""
    cluster, spec = config["cluster"], config["models"][model]
    size_b = backbone_size_b(config, spec["backbone"])
    gpus = spec["gpus"]
    if gpus:
        finetune_gpu_plan(config, model)
        host_gb = size_b * LOAD_BYTES[spec["method"]] + PROCESS_GB * gpus
    elif spec["method"] == "full":
        host_gb = size_b * FULL_TRAIN_BYTES
    else:
        host_gb = 1.5 * size_b * CPU_BYTES
    return _resources(cluster, "finetune", size_b, gpus, host_gb, attempt)


def backbone_vocab(config: dict, backbone: str) -> int:
    """A backbone's vocabulary size: its `vocab_size:` hint, else its prepared directory's
    config.json (there once the backbone job has run, so always in the training job), else
    DEFAULT_VOCAB."""
    import json
    from pathlib import Path

    from .planning import backbone_dir

    hint = config["backbones"].get(backbone, {}).get("vocab_size")
    if hint:
        return hint
    try:
        model_config = json.loads((Path(backbone_dir(backbone)) / "config.json").read_text())
    except (OSError, ValueError):
        return DEFAULT_VOCAB
    vocab = model_config.get("vocab_size") or model_config.get("text_config", {}).get("vocab_size")
    return vocab if isinstance(vocab, int) and vocab > 0 else DEFAULT_VOCAB


def llama_shape(size_b: float) -> tuple[float, float]:
    """(hidden size, layers) of a LLaMA-family model of this size: 12 x layers x hidden²
    parameters with hidden = 128 x layers (7B: 4096 x 32, 13B: 5120 x 40)."""
    hidden = (size_b * 1e9 * 128 / 12) ** (1 / 3)
    return hidden, hidden / 128


def training_gpu_gb(size_b: float, method: str, gpus: int, micro_batch: int, max_length: int,
                    checkpointing: bool, vocab: int = DEFAULT_VOCAB) -> float:
    """GB one GPU needs to train: model states, activations of a micro-batch of max_length
    tokens, its logits over a vocabulary of `vocab` words, and the two layers FSDP holds
    gathered at a time."""
    params = size_b * 1e9
    hidden, layers = llama_shape(size_b)
    if method == "full":
        states = params * FULL_TRAIN_BYTES / gpus
    elif method == "lora":
        states = params * LORA_BASE_BYTES[method] / gpus
    else:  # a quantised base is not sharded: every GPU holds its own
        states = params * LORA_BASE_BYTES[method]
    tokens = micro_batch * max_length
    per_layer = tokens * hidden
    activations = (per_layer * (CHECKPOINTED_BYTES * layers + ACTIVATION_BYTES) if checkpointing
                   else per_layer * ACTIVATION_BYTES * layers)
    gathered = 2 * (params / layers) * 4 if gpus > 1 else 0
    return (states + activations + tokens * vocab * LOGIT_BYTES_PER_WORD + gathered) / 1e9


def finetune_gpu_plan(config: dict, model: str) -> dict:
    """Whether `model`'s training fits cluster.gpu_memory_gb per GPU: as configured, else
    with activation checkpointing (switched on: it is a runtime setting, the weights do not
    change), else a named error that says how many GPUs would do.
    Returns {"gradient_checkpointing", "gpu_gb" (the estimate), "why"}."""
    from .config import ConfigError

    cluster, spec = config["cluster"], config["models"][model]
    gpus, wanted = spec.get("gpus", 0), spec.get("gradient_checkpointing", False)
    if not gpus:
        return {"gradient_checkpointing": wanted, "gpu_gb": 0.0, "why": "trains on the CPU"}
    size_b = backbone_size_b(config, spec["backbone"])
    usable = USABLE_GPU_FRACTION * cluster["gpu_memory_gb"]
    method, micro, length = spec["method"], spec["micro_batch_size"], spec["max_length"]
    vocab = backbone_vocab(config, spec["backbone"])
    need = {ckpt: training_gpu_gb(size_b, method, gpus, micro, length, ckpt, vocab) for ckpt in (False, True)}
    if not wanted and need[False] <= usable:
        return {"gradient_checkpointing": False, "gpu_gb": need[False], "why": "fits without it"}
    if need[True] <= usable:
        why = (f"~{need[False]:.0f} GB per GPU without it, {usable:.0f} GB usable of cluster.gpu_memory_gb "
               f"{cluster['gpu_memory_gb']:g}" if not wanted else f"models.{model}.gradient_checkpointing")
        return {"gradient_checkpointing": True, "gpu_gb": need[True], "why": why}
    more = next((n for n in range(gpus + 1, 257)
                 if training_gpu_gb(size_b, method, n, micro, length, True, vocab) <= usable), None)
    fix = (f"set models.{model}.gpus to at least {more} (batch_size must stay a multiple of micro_batch_size x gpus), "
           if more and method in ("full", "lora") else "")
    raise ConfigError(
        f"models.{model}: training {size_b:g}B parameters ({method}) on {gpus} GPU(s) needs ~{need[True]:.0f} GB per GPU "
        f"even with activation checkpointing (micro_batch_size {micro}, max_length {length}, a vocabulary of "
        f"{vocab:,} words), more than the "
        f"{usable:.0f} GB usable of cluster.gpu_memory_gb {cluster['gpu_memory_gb']:g}: {fix}lower micro_batch_size, "
        "or set cluster.gpu_memory_gb to your GPUs' memory if they have more")


def _resources(cluster: dict, stage: str, size_b: float, gpus: int, host_gb: float, attempt: int) -> dict:
    resources = {
        "threads": cluster["cpus_per_gpu"] * gpus if gpus else cluster["cpus"],
        "mem_mb": cluster["memory_mb"] + math.ceil(host_gb * 1024),
        "runtime": _minutes(cluster, stage, size_b, attempt, gpus),
        "gpu": gpus,
    }
    if gpus and cluster.get("gpu_model"):
        resources["gpu_model"] = cluster["gpu_model"]
    if gpus:
        # all on one node: `--gpus=4` alone may be split over nodes, and the job's one process
        # tree (accelerate launch, vLLM, device_map) sees only its own node's GPUs
        resources["nodes"] = 1
    return resources


def slurm_settings(config: dict, gpus: int) -> dict:
    """The site's partition and account for a job (only the ones the config sets)."""
    cluster = config["cluster"]
    partition = (cluster.get("gpu_partition") or cluster.get("partition")) if gpus else cluster.get("partition")
    settings = {"slurm_partition": partition, "slurm_account": cluster.get("account"), "qos": cluster.get("qos")}
    return {k: v for k, v in settings.items() if v}


# The longest time SLURM lets a job ask for, per partition as the config names it (None: the
# cluster's default one): the partition's limit from sinfo, and the QOS's MaxWall from sacctmgr.
# Set by partitions.check when a SLURM run starts, before anything is submitted; empty otherwise.
_time_limits: dict = {}


def set_time_limits(limits: dict) -> None:
    _time_limits.clear()
    _time_limits.update(limits)


def _minutes(cluster: dict, stage: str, size_b: float, attempt: int, gpus: int = 0) -> int:
    """A job's time: the stage's, scaled by the model's size, times the attempt, capped by
    cluster.max_runtime; a retry also by what its partition and QOS allow, so a resubmitted job
    can start (the first attempt is checked against them instead, and stops the run if over)."""
    minutes = cluster["runtime"][stage] * max(1.0, size_b / REFERENCE_SIZE_B) * max(1, attempt)
    if cluster.get("max_runtime"):
        minutes = min(minutes, cluster["max_runtime"])
    limit = _time_limits.get(slurm_settings({"cluster": cluster}, gpus).get("slurm_partition"))
    if attempt > 1 and limit:
        minutes = min(minutes, limit)
    return math.ceil(minutes)
