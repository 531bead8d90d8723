"""Training data mixtures (as medAlpaca mixes its Medical Meadow sources): a model's data is
one or more datasets, each optionally capped at `max` records sampled with its own seed."""

from __future__ import annotations

import hashlib
import random


def part_seed(run_seed: int, dataset: str, seed: int | None = None) -> int:
    """The sampling seed of one part: its own `seed` if set, else derived from the run seed
    and the dataset's name (never its position, so reordering the list samples the same rows)."""
    if seed is not None:
        return seed
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{dataset}".encode()).digest()[:4], "big")


def mix(parts: list[dict], run_seed: int) -> tuple[list[dict], list[dict]]:
    """Concatenate the parts' records, each capped at `max` rows sampled with its seed.

    parts: [{"dataset": name, "records": [...], "max": int | None, "seed": int | None}].
    Returns (records, report); the report gives per dataset the rows available and taken."""
    records, report = [], []
    for part in parts:
        rows, cap = part["records"], part.get("max")
        seed = part_seed(run_seed, part["dataset"], part.get("seed"))
        if cap is not None and cap < len(rows):
            picked = sorted(random.Random(seed).sample(range(len(rows)), cap))  # keeps the file's order
            rows = [rows[i] for i in picked]
        records.extend(rows)
        report.append({"dataset": part["dataset"], "available": len(part["records"]), "taken": len(rows),
                       "max": cap, "seed": seed})
    return records, report
