"""What this job's GPUs can do, decided in one place: how many it sees, and the precision
training and inference run in.

Precision follows the compute capability of the job's GPUs (the lowest, should a node mix
generations): bf16 (with tf32 matmuls) from Ampere (8.0) on; fp16 before it, where bf16
exists only as a slow emulation (`torch.cuda.is_bf16_supported()` says True on a V100),
TrainingArguments refuses tf32 and vLLM refuses bf16; fp32 on a CPU. Training in fp16 keeps
fp32 master weights and scales the loss; its results differ from bf16 runs, so the choice is
logged and recorded in the checkpoint's train_config.json."""

from __future__ import annotations

import os

import torch

BF16_FROM = 8  # compute capability major: Ampere (A100 8.0, A10/A40/RTX 30xx 8.6), Ada 8.9, Hopper 9.0
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class GPUError(RuntimeError):
    """The job does not have the GPUs its settings ask for."""


def visible_gpus() -> int:
    """GPUs this process may use (SLURM sets CUDA_VISIBLE_DEVICES to the job's)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def capabilities() -> list[tuple[int, int]]:
    return [torch.cuda.get_device_capability(i) for i in range(visible_gpus())]


def precision() -> str:
    """'bf16', 'fp16' or 'fp32': the compute precision this job's devices run well."""
    caps = capabilities()
    if not caps:
        return "fp32"
    return "bf16" if min(major for major, _ in caps) >= BF16_FROM else "fp16"


def tf32() -> bool:
    """TF32 matmuls exist from Ampere on, the same GPUs that get bf16."""
    return precision() == "bf16"


def dtype() -> torch.dtype:
    return DTYPES[precision()]


def describe() -> str:
    """The job's GPUs for its log: names and compute capabilities."""
    if not visible_gpus():
        return "no GPU"
    return ", ".join(f"{torch.cuda.get_device_name(i)} ({major}.{minor})" for i, (major, minor) in enumerate(capabilities()))


def require_gpus(requested: int, setting: str) -> None:
    """Stop unless this job sees at least `requested` GPUs. A job that silently trained on
    fewer (or on the CPU) would hold its GPUs idle and re-derive the accumulation."""
    if requested <= 0:
        return
    seen = visible_gpus()
    if not torch.cuda.is_available() and torch.version.cuda is None:
        raise GPUError(f"{setting} asks for {requested} GPU(s), but this torch ({torch.__version__}) is a CPU-only "
                       "build: install a CUDA build of torch on the GPU nodes, or set it to 0 to train on the CPU")
    if seen < requested:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise GPUError(f"{setting} asks for {requested} GPU(s), but this job sees {seen} "
                       f"(CUDA_VISIBLE_DEVICES={visible!r}): request that many from SLURM (the finetune rule does), "
                       f"or set {setting} to {seen} where the batch still divides")
