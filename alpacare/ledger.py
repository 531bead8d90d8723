"""The ledger: what every LLM call cost, written as it happens, one shard per job.

`llm.ledger` (default `results/ledger`) is a directory of JSONL shards: each LLM client of a
job appends to its own shard (alpacare.shards: one writer per file, whole lines, so jobs on
several nodes never share a file) one line per paid call and one per group of cache hits or
local batch; a killed or failed job still accounts for every call it finished. Readers merge
every shard, the compacted file (`python -m alpacare.compact`) and a pre-shard single file
(`results/ledger.jsonl`, still read). `summarize` sums it per rule and endpoint.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from pathlib import Path

from . import shards

DEFAULT_PATH = "results/ledger"
COUNTS = ("calls", "cache_hits", "failures", "attempts", "input_tokens", "output_tokens", "cost_usd", "seconds")
SHARD_SUFFIX = ".jsonl"
COMPACTED = "compacted.jsonl"  # written by compaction only (alpacare.compact)


def cost_usd(price: dict, input_tokens: float, output_tokens: float) -> float:
    """USD for a call, `price` being USD per million tokens: {"input": x, "output": y}."""
    return (input_tokens * price.get("input", 0.0) + output_tokens * price.get("output", 0.0)) / 1e6


def locations(path: str | Path) -> tuple[Path, Path]:
    """(shard directory, legacy single file): `results/ledger` and `results/ledger.jsonl` both
    name the directory `results/ledger/` and the pre-shard file `results/ledger.jsonl`."""
    return shards.split_location(path, ".jsonl")


def sources(path: str | Path) -> list[Path]:
    """Every file that holds ledger lines: the legacy file, then the shards (compacted first)."""
    directory, legacy = locations(path)
    found = [legacy] if legacy.is_file() else []
    return found + shards.files(directory, SHARD_SUFFIX)


def encode(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


class Writer:
    """This process's own shard of the ledger, created at the first row."""

    def __init__(self, path: str | Path, label: str = "ledger"):
        self.directory = locations(path)[0]
        self.label = label
        self.name: str | None = None  # the shard's file name, once created
        self._appender: shards.Appender | None = None
        self._lock = threading.Lock()  # a client's threads append at once: one shard for all

    def append(self, rows: list[dict]) -> None:
        if not rows:
            return
        with self._lock:
            if self._appender is None:
                self.name = shards.shard_name(self.label) + SHARD_SUFFIX
                self._appender = shards.Appender(self.directory / self.name)
        self._appender.write(encode(rows))

    def close(self) -> None:
        """Sync and close the shard (and release its writer's lock: compaction may merge it)."""
        with self._lock:
            if self._appender is not None:
                self._appender.close()


def append(path: str | Path, rows: list[dict], label: str = "ledger") -> None:
    """Rows in a shard of their own (one-off writers; a client keeps one Writer)."""
    writer = Writer(path, label)
    try:
        writer.append(rows)
    finally:
        writer.close()


def parse(lines: list[bytes]) -> list[dict]:
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    return rows


def read(path: str | Path) -> list[dict]:
    """Every complete line of every shard; a line torn by a kill mid-write is skipped."""
    rows = []
    for source in sources(path):
        rows += parse(shards.complete_lines(source.read_bytes())[0])
    return rows


def summarize(path: str | Path = DEFAULT_PATH, by: tuple[str, ...] = ("rule", "endpoint")) -> list[dict]:
    """Rows of {*by, calls, cache_hits, failures, attempts, input_tokens, output_tokens,
    cost_usd, seconds, reported_model}, one per distinct `by` key, sorted, plus a final 'total'
    row; reported_model: every model the API said answered that group's calls."""
    groups: dict[tuple, dict] = {}
    reported: dict[tuple, set] = {}
    total = {k: "total" if n == 0 else "" for n, k in enumerate(by)} | {c: 0 for c in COUNTS}
    for row in read(path):
        key = tuple(row.get(k) or row.get("stage") or "" if k == "rule" else row.get(k) or "" for k in by)
        group = groups.setdefault(key, dict(zip(by, key)) | {c: 0 for c in COUNTS})
        for c in COUNTS:
            group[c] += row.get(c, 0) or 0
            total[c] += row.get(c, 0) or 0
        if row.get("reported_model"):
            reported.setdefault(key, set()).update(row["reported_model"].split(", "))
    rows = [groups[k] | {"reported_model": ", ".join(sorted(reported.get(k, ())))} for k in sorted(groups)]
    total["reported_model"] = ""
    for r in rows + [total]:
        r["cost_usd"] = round(r["cost_usd"], 6)
        r["seconds"] = round(r["seconds"], 3)
    return rows + [total] if rows else []


def total_cost(path: str | Path) -> float:
    return sum(row.get("cost_usd", 0) or 0 for row in read(path))


class SpendWatcher:
    """The cost the ledger's shards record, kept current by reading only what each shard
    gained since the last look, at most every `every` seconds (other jobs write too; on a
    network filesystem each look costs a directory listing). `exclude`: a shard name to leave
    out (the caller's own, whose spend it knows exactly)."""

    def __init__(self, path: str | Path, exclude=lambda name: False, every: float = 0.0):
        self.path, self.exclude, self.every = path, exclude, every
        self._read: dict[Path, int] = {}  # bytes of complete lines counted, per file
        self._spent: dict[Path, float] = {}
        self._last = None

    def total(self) -> float:
        now = time.monotonic()
        if self._last is None or now - self._last >= self.every:
            self._last = now
            for source in sources(self.path):
                if self.exclude(source.name):
                    continue
                offset = self._read.get(source, 0)
                try:
                    if source.stat().st_size <= offset:  # nothing new: no open
                        continue
                except FileNotFoundError:
                    continue
                data = shards.read_from(source, offset)
                lines, used = shards.complete_lines(data)  # an incomplete last line waits for the rest
                self._read[source] = offset + used
                self._spent[source] = self._spent.get(source, 0.0) + sum(
                    row.get("cost_usd", 0) or 0 for row in parse(lines) if isinstance(row, dict))
        return sum(self._spent.values())


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "No LLM calls recorded.\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def write_tables(ledger_path, md_path, csv_path) -> None:
    from .io import write_text

    rows = summarize(ledger_path)
    write_text(md_path, markdown(rows))
    write_text(csv_path, to_csv(rows))
