"""Training data mixtures: several datasets, each capped and sampled with a fixed seed."""

from __future__ import annotations

import random


def mix(datasets: list[tuple[list[dict], int | None]], seed: int) -> list[dict]:
    """Concatenate training sets, each capped at `max` records sampled with a fixed seed."""
    records = []
    for n, (rows, cap) in enumerate(datasets):
        if cap is not None and cap < len(rows):
            rows = random.Random(seed + n).sample(rows, cap)
        records.extend(rows)
    return records
