"""What the cluster's nodes offer (from `sinfo`) and which planned jobs no node could ever run.

SLURM accepts a job that asks for more CPUs, memory, GPUs or time than any node of its
partition has, and leaves it pending forever (reason PartitionConfig or Resources) while
Snakemake waits. `impossible(jobs, nodes)` finds those jobs before anything is submitted, each
with the `cluster:` key that decides the request; the workflow calls `check()` when a run
starts with the SLURM executor (rules/common.smk, onstart). Nodes that are drained, down,
failed or in maintenance are no capacity; a partition list (`gpu,cpu`) offers the nodes of
each; the QOS (`cluster.qos`) limits of time and GPUs per job are read where `sacctmgr`
answers. `check()` also hands the time limits to alpacare.cluster, which caps every retry's
request by them: a retry asks for more time, never more than the partition and QOS allow.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

# one line per node and partition: name|partition (default marked *)|CPUs|memory MB|GRES|time limit|state
SINFO = ["sinfo", "--noheader", "--Node", "--format=%N|%P|%c|%m|%G|%l|%t"]
# a QOS's limits per job: name|MaxWall|MaxTRESPerJob (e.g. gres/gpu=4)
SACCTMGR_QOS = ["sacctmgr", "--noheader", "--parsable2", "show", "qos", "format=Name,MaxWall,MaxTRESPerJob"]
# node states (sinfo %t, without its flag suffixes *~#!%$@^-) that run no new job
UNUSABLE_STATES = ("drain", "drng", "down", "fail", "maint", "inval", "futr", "unk", "npc", "plnd")


class ImpossibleRequest(RuntimeError):
    """A planned job asks for more than any node of its partition offers."""


class SlurmUnavailable(RuntimeError):
    """SLURM's client commands are missing or do not answer on this host."""


@dataclass(frozen=True)
class Qos:
    name: str
    max_wall: int | None = None  # minutes per job; None: no limit
    max_gpus: int | None = None  # GPUs per job; None: no limit


@dataclass(frozen=True)
class Node:
    name: str
    partition: str
    default: bool  # the partition jobs go to when they name none
    cpus: int
    memory_mb: int
    gpus: dict = field(default_factory=dict)  # GPU type ("" when untyped) -> count
    time_limit: int | None = None  # the partition's, in minutes; None: unlimited
    state: str = "idle"  # sinfo's compact state, flag suffixes removed


@dataclass(frozen=True)
class Job:
    name: str  # the rule and its wildcards, as the error shows it
    rule: str
    threads: int
    mem_mb: int
    runtime: int  # minutes
    gpu: int = 0
    gpu_model: str | None = None
    partition: str | None = None  # one partition, or a comma-separated list SLURM picks from


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
    """Nodes from SINFO's output (a line without the state field counts as idle)."""
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, partition, cpus, memory, gres, limit, *state = line.strip().split("|")
        nodes.append(Node(name, partition.rstrip("*"), partition.endswith("*"), int(cpus), int(memory.rstrip("+")),
                          parse_gres(gres), parse_minutes(limit), (state or ["idle"])[0].strip().rstrip("*~#!%$@^-")))
    return nodes


def usable(node: Node) -> bool:
    return not node.state.lower().startswith(UNUSABLE_STATES)


def parse_qos(text: str, name: str) -> Qos | None:
    """QOS `name`'s per-job limits from SACCTMGR_QOS's output; None if it is not listed."""
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) >= 3 and fields[0] == name:
            gpus = [int(m) for m in re.findall(r"gres/gpu(?::[^=,]+)?=(\d+)", fields[2])]
            return Qos(name, parse_minutes(fields[1]) if fields[1] else None, max(gpus) if gpus else None)
    return None


def partition_names(partition: str | None) -> list[str]:
    return [p.strip() for p in (partition or "").split(",") if p.strip()]


def time_limits(nodes: list[Node], partitions, qos: Qos | None = None) -> dict:
    """{partition as the config names it (None: the default one): the longest time in minutes
    a job there may ask (the partition's limit, and the QOS's MaxWall)}; unlimited ones left out."""
    limits = {}
    for partition in partitions:
        names = partition_names(partition)
        candidates = [n for n in nodes if (n.partition in names if names else n.default)]
        found = [n.time_limit for n in candidates]
        limit = None if not found or None in found else max(found)
        if qos is not None and qos.max_wall is not None:
            limit = qos.max_wall if limit is None else min(limit, qos.max_wall)
        if limit is not None:
            limits[partition] = limit
    return limits


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


def shortfalls(job: Job, nodes: list[Node], qos: Qos | None = None) -> list[str]:
    """Why no node can run `job` (empty if one can)."""
    hint = _hints(job)
    partitions = sorted({n.partition for n in nodes})
    names = partition_names(job.partition)
    if names:
        missing = [p for p in names if p not in partitions]
        if missing:
            return [f"partition {', '.join(repr(p) for p in missing)} does not exist (there are: "
                    f"{', '.join(partitions)}): set {hint['partition']}"]
        candidates = [n for n in nodes if n.partition in names]
        where = f"partition {job.partition}"
    else:
        candidates = [n for n in nodes if n.default] or nodes
        where = f"the default partition ({candidates[0].partition})" if candidates else "the cluster"
    if not candidates:
        return ["sinfo lists no nodes"]
    if qos is not None and qos.max_gpus is not None and job.gpu > qos.max_gpus:
        return [f"{job.gpu} GPUs, QOS {qos.name} allows {qos.max_gpus} per job (sacctmgr's MaxTRESPerJob): "
                f"change {hint['gpus']} or cluster.qos"]
    if qos is not None and qos.max_wall is not None and job.runtime > qos.max_wall:
        return [f"{job.runtime} minutes, QOS {qos.name} allows {qos.max_wall} per job (sacctmgr's MaxWall): "
                f"set {hint['time']} or cluster.qos"]
    up = [n for n in candidates if usable(n)]
    if not up:
        states = ", ".join(sorted({f"{n.name} {n.state}" for n in candidates}))
        return [f"a node of {where}, and every one is drained, down or failed ({states}): wait for the admins, "
                f"or set {hint['partition']}"]
    candidates = up

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


def impossible(jobs: list[Job], nodes: list[Node], qos: Qos | None = None) -> list[str]:
    """One line per rule whose jobs no node can run, naming the first such job and how many."""
    found: dict[tuple, list[Job]] = {}
    for job in jobs:
        problems = shortfalls(job, nodes, qos)
        if problems:
            found.setdefault((job.rule, tuple(problems)), []).append(job)
    lines = []
    for (rule, problems), stuck in found.items():
        more = f" (and {len(stuck) - 1} more job(s) of this rule)" if len(stuck) > 1 else ""
        lines.append(f"{stuck[0].name}{more} asks for " + "; ".join(problems))
    return lines


def run_slurm(command: list[str]) -> str:
    """What a SLURM client command prints; SlurmUnavailable, named, if it is missing or fails."""
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    except FileNotFoundError:
        raise SlurmUnavailable(f"`{command[0]}` is not on this host's PATH: the SLURM executor needs SLURM's client "
                               f"commands where snakemake runs (a login node; `module load slurm` on some sites)") from None
    except subprocess.CalledProcessError as err:
        raise SlurmUnavailable(f"`{' '.join(command)}` failed (exit {err.returncode}): {err.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"`{' '.join(command)}` did not answer in 60 s: is the SLURM controller up?") from None


def read_qos(name: str | None, sacctmgr_text: str | None = None) -> Qos | None:
    """QOS `name`'s limits, where sacctmgr answers (it needs the accounting database, which not
    every cluster runs): None without a name, or when sacctmgr cannot tell."""
    if not name:
        return None
    if sacctmgr_text is None:
        try:
            sacctmgr_text = run_slurm(SACCTMGR_QOS)
        except SlurmUnavailable:
            return None
    return parse_qos(sacctmgr_text, name)


def check(jobs: list[Job], sinfo_text: str | None = None, qos: str | None = None,
          sacctmgr_text: str | None = None) -> dict:
    """Raise ImpossibleRequest naming every job no node can run. Reads `sinfo` (and, for a
    `qos`, sacctmgr) unless given. Returns the time limits (time_limits) of the jobs'
    partitions and hands them to alpacare.cluster, which caps every retry by them."""
    if not jobs:
        return {}
    if sinfo_text is None:
        sinfo_text = run_slurm(SINFO)
    nodes = parse_sinfo(sinfo_text)
    limits_of = read_qos(qos, sacctmgr_text)
    problems = impossible(jobs, nodes, limits_of)
    if problems:
        raise ImpossibleRequest(
            "SLURM would accept these jobs and leave them pending forever, since no node offers what they ask "
            "(nothing was submitted; change the config key named, or the node/partition you submit to):\n  "
            + "\n  ".join(problems))
    from . import cluster

    limits = time_limits(nodes, {job.partition for job in jobs}, limits_of)
    cluster.set_time_limits(limits)
    return limits
