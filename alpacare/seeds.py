"""Seed tasks: clinician-style (topic, view, type, difficulty 1-5, instruction, input)."""

from __future__ import annotations

import json
from pathlib import Path

SEED_FIELDS = ("topic", "view", "type", "difficulty", "instruction", "input")
NO_INPUT = "<noinput>"


class SeedError(ValueError):
    pass


def load_seeds(paths: list[str | Path]) -> list[dict]:
    """Read and check seed files; every problem names the file, the item and the field."""
    seeds = []
    for path in paths:
        try:
            items = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SeedError(f"{path}: seed file not found") from None
        except json.JSONDecodeError as err:
            raise SeedError(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
        if not isinstance(items, list):
            raise SeedError(f"{path}: expected a JSON list of seed tasks, got {type(items).__name__}")
        for n, item in enumerate(items):
            seeds.append(check_seed(item, f"{path}: item {n}"))
    if not seeds:
        raise SeedError(f"no seed tasks in {', '.join(map(str, paths))}")
    return seeds


def check_seed(item, where: str) -> dict:
    if not isinstance(item, dict):
        raise SeedError(f"{where}: expected an object, got {type(item).__name__}")
    for field in SEED_FIELDS:
        if field not in item:
            raise SeedError(f"{where}: missing field '{field}'")
        if field != "difficulty" and not isinstance(item[field], str):
            raise SeedError(f"{where}: field '{field}' must be a string")
    for field in ("topic", "view", "type", "instruction"):
        if not item[field].strip():
            raise SeedError(f"{where}: field '{field}' is empty")
    try:
        difficulty = int(str(item["difficulty"]).strip())
    except ValueError:
        difficulty = None
    if difficulty is None or not 1 <= difficulty <= 5 or isinstance(item["difficulty"], bool):
        raise SeedError(f"{where}: field 'difficulty' must be 1-5, got {item['difficulty']!r}")
    task = {f: item[f].strip() for f in SEED_FIELDS if f != "difficulty"}
    task["difficulty"] = difficulty
    task["input"] = task["input"] or NO_INPUT
    return task
