"""What the cluster's nodes offer (from `sinfo`) and which planned jobs no node could ever run.

SLURM accepts a job that asks for more CPUs, memory, GPUs or time than any node of its
partition has, and leaves it pending forever (reason PartitionConfig or Resources) while
Snakemake waits. `impossible(jobs, nodes)` finds those jobs before anything is submitted, each
with the `cluster:` key that decides the request; the workflow calls `check()` when a run
starts with the SLURM executor (rules/common.smk, onstart).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

# one line per node and partition: name|partition (default marked *)|CPUs|memory MB|GRES|time limit
SINFO = ["sinfo", "--noheader", "--Node", "--format=%N|%P|%c|%m|%G|%l"]


class ImpossibleRequest(RuntimeError):
    """A planned job asks for more than any node of its partition offers."""


@dataclass(frozen=True)
class Node:
    name: str
    partition: str
    default: bool  # the partition jobs go to when they name none
    cpus: int
    memory_mb: int
    gpus: dict = field(default_factory=dict)  # GPU type ("" when untyped) -> count
    time_limit: int | None = None  # the partition's, in minutes; None: unlimited


@dataclass(frozen=True)
class Job:
    name: str  # the rule and its wildcards, as the error shows it
    rule: str
    threads: int
    mem_mb: int
    runtime: int  # minutes
    gpu: int = 0
    gpu_model: str | None = None
    partition: str | None = None


def parse_minutes(text: str) -> int | None:
    """SLURM's time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; 'infinite' is None."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:
        parts += [0] * (3 - len(parts))  # D-HH, D-HH:MM
        hours, minutes, seconds = parts
    else:
        hours, minutes, seconds = ([0] * (3 - len(parts)) + parts) if len(parts) > 1 else (0, parts[0], 0)
    return int(days or 0) * 1440 + hours * 60 + minutes + (seconds > 0)


def parse_gres(text: str) -> dict:
    """{'a100': 4} from 'gpu:a100:4(S:0-1)'; an untyped 'gpu:2' counts under ''."""
    gpus: dict[str, int] = {}
    for item in re.sub(r"\([^)]*\)", "", text).split(","):
        parts = item.strip().split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        kind, count = (parts[1], parts[2]) if len(parts) >= 3 else ("", parts[1])
        if count.isdigit():
            gpus[kind] = gpus.get(kind, 0) + int(count)
    return gpus


def parse_sinfo(text: str) -> list[Node]:
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, partition, cpus, memory, gres, limit = line.strip().split("|")
        nodes.append(Node(name, partition.rstrip("*"), partition.endswith("*"), int(cpus), int(memory.rstrip("+")),
                          parse_gres(gres), parse_minutes(limit)))
    return nodes


def _hints(job: Job) -> dict:
    """The config key that decides each part of a job's request."""
    return {
        "cpus": "cluster.cpus_per_gpu" if job.gpu else "cluster.cpus",
        "memory": "cluster.memory_mb (the job adds its model's weights to it)",
        "gpus": ("the model's `gpus:` (models.<name>.gpus)" if job.rule == "finetune" else
                 "cluster.gpu_memory_gb (a job asks for enough GPUs to hold twice its model's bf16 weights)"),
        "gpu type": "cluster.gpu_model",
        "time": "cluster.max_runtime (the partition's limit) or cluster.runtime",
        "partition": "cluster.gpu_partition" if job.gpu else "cluster.partition",
    }


def shortfalls(job: Job, nodes: list[Node]) -> list[str]:
    """Why no node can run `job` (empty if one can)."""
    hint = _hints(job)
    partitions = sorted({n.partition for n in nodes})
    if job.partition:
        candidates = [n for n in nodes if n.partition == job.partition]
        where = f"partition {job.partition}"
        if not candidates:
            return [f"partition {job.partition!r} does not exist (there are: {', '.join(partitions)}): "
                    f"set {hint['partition']}"]
    else:
        candidates = [n for n in nodes if n.default] or nodes
        where = f"the default partition ({candidates[0].partition})" if candidates else "the cluster"
    if not candidates:
        return ["sinfo lists no nodes"]

    def gpus(node: Node) -> int:
        return node.gpus.get(job.gpu_model, 0) if job.gpu_model else sum(node.gpus.values())

    def fits(node: Node) -> bool:
        return (node.cpus >= job.threads and node.memory_mb >= job.mem_mb and gpus(node) >= job.gpu
                and (node.time_limit is None or node.time_limit >= job.runtime))

    if any(fits(n) for n in candidates):
        return []
    problems = []
    most = max(n.cpus for n in candidates)
    if job.threads > most:
        problems.append(f"{job.threads} CPUs, the most a node of {where} has is {most}: lower {hint['cpus']}")
    most = max(n.memory_mb for n in candidates)
    if job.mem_mb > most:
        problems.append(f"{job.mem_mb} MB of memory, the most a node of {where} has is {most} MB: lower {hint['memory']}")
    most = max(gpus(n) for n in candidates)
    if job.gpu > most:
        kind = f"{job.gpu_model} " if job.gpu_model else ""
        key = hint["gpu type"] if job.gpu_model and not most else hint["gpus"]
        problems.append(f"{job.gpu} {kind}GPUs, the most a node of {where} has is {most}: change {key}")
    limits = [n.time_limit for n in candidates]
    if None not in limits and job.runtime > max(limits):
        problems.append(f"{job.runtime} minutes, the time limit of {where} is {max(limits)}: set {hint['time']}")
    return problems or [f"no single node of {where} has {job.threads} CPUs, {job.mem_mb} MB and {job.gpu} GPUs together"]


def impossible(jobs: list[Job], nodes: list[Node]) -> list[str]:
    """One line per rule whose jobs no node can run, naming the first such job and how many."""
    found: dict[tuple, list[Job]] = {}
    for job in jobs:
        problems = shortfalls(job, nodes)
        if problems:
            found.setdefault((job.rule, tuple(problems)), []).append(job)
    lines = []
    for (rule, problems), stuck in found.items():
        more = f" (and {len(stuck) - 1} more job(s) of this rule)" if len(stuck) > 1 else ""
        lines.append(f"{stuck[0].name}{more} asks for " + "; ".join(problems))
    return lines


def check(jobs: list[Job], sinfo_text: str | None = None) -> None:
    """Raise ImpossibleRequest naming every job no node can run. Reads `sinfo` unless given."""
    if not jobs:
        return
    if sinfo_text is None:
        sinfo_text = subprocess.run(SINFO, capture_output=True, text=True, check=True, timeout=60).stdout
    problems = impossible(jobs, parse_sinfo(sinfo_text))
    if problems:
        raise ImpossibleRequest(
            "SLURM would accept these jobs and leave them pending forever, since no node offers what they ask "
            "(nothing was submitted; change the config key named, or the node/partition you submit to):\n  "
            + "\n  ".join(problems))
