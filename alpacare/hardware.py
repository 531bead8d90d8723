"""What this job's GPUs can do, decided in one place: how many it sees, and the precision
training and inference run in.

Precision follows the compute capability of the job's GPUs (the lowest, should a node mix
generations): bf16 (with tf32 matmuls) from Ampere (8.0) on; fp16 before it, where bf16
exists only as a slow emulation (`torch.cuda.is_bf16_supported()` says True on a V100),
TrainingArguments refuses tf32 and vLLM refuses bf16; fp32 on a CPU. Training in fp16 keeps
fp32 master weights and scales the loss; its results differ from bf16 runs, so the choice is
logged and recorded in the checkpoint's train_config.json.

Nothing here initialises CUDA. Counts, compute capabilities and names come from NVML (the
driver's management library, read through ctypes as torch itself does for its device count):
once torch has initialised CUDA in a job, vLLM must start its workers with `spawn`, and an
engine started after `torch.cuda.get_device_capability` would take that road. Only where NVML
cannot be loaded (no NVIDIA driver: a CPU machine, or a ROCm one) does torch answer."""

from __future__ import annotations

import ctypes
import os

import torch

BF16_FROM = 8  # compute capability major: Ampere (A100 8.0, A10/A40/RTX 30xx 8.6), Ada 8.9, Hopper 9.0
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class GPUError(RuntimeError):
    """The job does not have the GPUs its settings ask for."""


NVML_LIBRARY = "libnvidia-ml.so.1"  # the driver's; absent on a machine without an NVIDIA driver


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def nvml_devices() -> list[dict] | None:
    """The GPUs this process may use, as NVML sees them, without initialising CUDA:
    [{"name", "capability", "free_bytes", "total_bytes"}] in CUDA_VISIBLE_DEVICES order (SLURM
    and alpacare.gpus set it to the job's devices; indices or GPU- UUIDs); None where NVML
    cannot answer (no driver, or a MIG slice it cannot name), so the caller asks torch."""
    try:
        nvml = ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        count = ctypes.c_uint()
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        wanted: list = list(range(count.value)) if visible is None else _visible_ids(visible)
        if wanted is None:
            return None
        devices = []
        for device in wanted:
            handle = ctypes.c_void_p()
            if isinstance(device, int):
                found = nvml.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(device), ctypes.byref(handle))
            else:
                found = nvml.nvmlDeviceGetHandleByUUID(device.encode(), ctypes.byref(handle))
            if found != 0:
                break  # CUDA too stops at the first id that names no device
            major, minor, name, memory = ctypes.c_int(), ctypes.c_int(), ctypes.create_string_buffer(96), _Memory()
            if (nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)) != 0
                    or nvml.nvmlDeviceGetName(handle, name, ctypes.c_uint(len(name))) != 0
                    or nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0):
                return None
            devices.append({"name": name.value.decode(errors="replace"), "capability": (major.value, minor.value),
                            "free_bytes": memory.free, "total_bytes": memory.total})
        return devices
    finally:
        nvml.nvmlShutdown()


def _visible_ids(visible: str) -> list | None:
    """CUDA_VISIBLE_DEVICES as NVML indices or UUIDs, up to the first invalid entry as CUDA
    reads it ('' or '-1': none); None for MIG slices, which NVML's index does not name."""
    ids: list = []
    for item in (part.strip() for part in visible.split(",")):
        if item.startswith("MIG-"):
            return None
        if item.startswith("GPU-"):
            ids.append(item)
        elif item.isdigit():
            ids.append(int(item))
        else:
            break
    return ids


def visible_gpus() -> int:
    """GPUs this process may use (SLURM sets CUDA_VISIBLE_DEVICES to the job's)."""
    devices = nvml_devices()
    if devices is not None:
        return len(devices)
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def capabilities() -> list[tuple[int, int]]:
    devices = nvml_devices()
    if devices is not None:
        return [d["capability"] for d in devices]
    return [torch.cuda.get_device_capability(i) for i in range(visible_gpus())]  # no NVML: initialises CUDA


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
    devices = nvml_devices()
    if devices is not None:
        named = [(d["name"], d["capability"]) for d in devices]
    else:
        named = [(torch.cuda.get_device_name(i), cap) for i, cap in enumerate(capabilities())]
    return ", ".join(f"{name} ({major}.{minor})" for name, (major, minor) in named) or "no GPU"


def require_gpus(requested: int, setting: str, advice: str = "") -> None:
    """Stop unless this job sees at least `requested` GPUs. A job that silently trained on
    fewer (or on the CPU) would hold its GPUs idle and re-derive the accumulation."""
    if requested <= 0:
        return
    seen = visible_gpus()
    # from the build, not torch.cuda.is_available(): that initialises the CUDA driver, after
    # which vLLM's forked workers could not use it
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        raise GPUError(f"{setting} asks for {requested} GPU(s), but this torch ({torch.__version__}) is a CPU-only "
                       "build: install a CUDA build of torch on the GPU nodes"
                       + (f"; {advice}" if advice else ", or set it to 0 to train on the CPU"))
    if seen < requested:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise GPUError(f"{setting} asks for {requested} GPU(s), but this job sees {seen} "
                       f"(CUDA_VISIBLE_DEVICES={visible!r}): "
                       + (advice or f"request that many from SLURM (the finetune rule does), or set {setting} to "
                                    f"{seen} where the batch still divides"))
