"""The ledger: what every LLM call cost, appended as it happens to results/ledger.jsonl.

One JSON line per paid call (and one per group of cache hits or local batch), written with a
single O_APPEND write, so concurrent jobs interleave whole lines and a killed or failed job
still accounts for every call it finished. `summarize` sums it per rule and endpoint.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

DEFAULT_PATH = "results/ledger.jsonl"
COUNTS = ("calls", "cache_hits", "failures", "attempts", "input_tokens", "output_tokens", "cost_usd", "seconds")


def cost_usd(price: dict, input_tokens: float, output_tokens: float) -> float:
    """USD for a call, `price` being USD per million tokens: {"input": x, "output": y}."""
    return (input_tokens * price.get("input", 0.0) + output_tokens * price.get("output", 0.0)) / 1e6


def append(path: str | Path, rows: list[dict]) -> None:
    if not rows:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path: str | Path) -> list[dict]:
    """Every complete line; a line torn by a kill mid-write (no newline yet) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n") and line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def summarize(path: str | Path = DEFAULT_PATH, by: tuple[str, ...] = ("rule", "endpoint")) -> list[dict]:
    """Rows of {*by, calls, cache_hits, failures, attempts, input_tokens, output_tokens,
    cost_usd, seconds}, one per distinct `by` key, sorted, plus a final 'total' row."""
    groups: dict[tuple, dict] = {}
    total = {k: "total" if n == 0 else "" for n, k in enumerate(by)} | {c: 0 for c in COUNTS}
    for row in read(path):
        key = tuple(row.get(k) or row.get("stage") or "" if k == "rule" else row.get(k) or "" for k in by)
        group = groups.setdefault(key, dict(zip(by, key)) | {c: 0 for c in COUNTS})
        for c in COUNTS:
            group[c] += row.get(c, 0) or 0
            total[c] += row.get(c, 0) or 0
    rows = [groups[k] for k in sorted(groups)]
    for r in rows + [total]:
        r["cost_usd"] = round(r["cost_usd"], 6)
        r["seconds"] = round(r["seconds"], 3)
    return rows + [total] if rows else []


def total_cost(path: str | Path) -> float:
    return sum(row.get("cost_usd", 0) or 0 for row in read(path))


class SpendWatcher:
    """The ledger's total cost, kept current by reading only what was appended since the
    last look (other jobs append too), for the budget cap."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.spent = 0.0
        self._partial = b""

    def total(self) -> float:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.spent
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an incomplete last line waits for the rest
        for line in lines:
            try:
                self.spent += json.loads(line).get("cost_usd", 0) or 0
            except (json.JSONDecodeError, AttributeError):
                continue
        return self.spent


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
