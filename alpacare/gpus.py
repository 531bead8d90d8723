"""Each local GPU job gets GPUs of its own on a machine without SLURM (a lab's 8-GPU server).

Snakemake counts a `gpu` resource (`snakemake --cores all --resources gpu=8` keeps the jobs
running at once within eight GPUs) but does not say which devices a job gets: every job would
see them all and use the first. So a job claims its devices itself, before anything touches
CUDA (alpacare.snake.setup): an exclusive, non-blocking `flock` on `.snakemake/gpus/<id>.lock`
for each of `count` free ids of the machine's pool, then CUDA_VISIBLE_DEVICES set to those ids,
which its children (accelerate launch, vLLM's workers) inherit. The locks belong to the job's
process: they are released when it exits, however it exits (the kernel drops them), so a
killed job never leaves a device claimed. A job that finds too few free waits for them, so
even an oversubscribed `--resources gpu=` never makes two jobs share one.

The pool is CUDA_VISIBLE_DEVICES as Snakemake was started with (`CUDA_VISIBLE_DEVICES=4,5,6,7
snakemake ...` lends the grid four GPUs), else every GPU NVML counts. Under SLURM
(SLURM_JOB_ID set) nothing is claimed: SLURM already gives each job its own devices, and lock
files on a shared filesystem would make jobs on different nodes wait for each other."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

LOCK_DIR = Path(".snakemake") / "gpus"  # relative to the workflow's directory, where every job runs
WAIT_LOG_SECONDS = 60.0

log = logging.getLogger("alpacare.gpus")
_held: list = []  # open lock files: a lock lasts as long as its file stays open in this process


def device_pool() -> list[str]:
    """The machine's GPU ids local jobs share (see the module docstring)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [part.strip() for part in visible.split(",") if part.strip() and part.strip() != "-1"]
    from . import hardware

    devices = hardware.nvml_devices()
    return [str(n) for n in range(len(devices))] if devices else []


def claim(count: int, who: str, lock_dir: Path = LOCK_DIR, poll_seconds: float = 1.0) -> list[str] | None:
    """Claim `count` of the pool's GPUs for this process and point CUDA_VISIBLE_DEVICES at them.
    Returns the ids; None where nothing is claimed (SLURM, no GPU asked for, or a pool of none:
    the GPU check that follows stops the job by name). `who` names the job in messages."""
    if count <= 0 or os.environ.get("SLURM_JOB_ID") or _held:
        return None
    pool = device_pool()
    if not pool:
        return None
    if count > len(pool):
        from .hardware import GPUError

        raise GPUError(f"{who} asks for {count} GPU(s), but this machine lends local jobs {len(pool)} "
                       f"({', '.join(pool)}; CUDA_VISIBLE_DEVICES of the snakemake command, else every GPU)")
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited_since = last_said = time.monotonic()
    while True:
        got = _try(pool, count, lock_dir)
        if got:
            ids = [device for device, _ in got]
            _held.extend(handle for _, handle in got)
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
            log.info("%s: GPU(s) %s of %s (CUDA_VISIBLE_DEVICES)", who, ",".join(ids), ",".join(pool))
            return ids
        if time.monotonic() - last_said >= WAIT_LOG_SECONDS:
            last_said = time.monotonic()
            log.info("%s: waiting %.0fs for %d free GPU(s) of %s (other jobs hold them: %s)", who,
                     last_said - waited_since, count, ",".join(pool), lock_dir)
        time.sleep(poll_seconds)


def _try(pool: list[str], count: int, lock_dir: Path) -> list | None:
    """`count` free ids locked, or none at all: holding part of a claim while waiting for the
    rest could deadlock two jobs that each hold half."""
    got = []
    for device in pool:
        handle = open(lock_dir / f"{device}.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")  # who holds it, for a person looking
        handle.flush()
        got.append((device, handle))
        if len(got) == count:
            return got
    for _, handle in got:
        handle.close()
    return None


def release() -> None:
    """Give the claimed devices back before the process ends (tests; a job just exits)."""
    while _held:
        _held.pop().close()
