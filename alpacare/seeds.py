"""Seed tasks: clinician-style (topic, view, type, difficulty 1-5, instruction, input).

A config's `seeds:` lists files, or names of published seed sets (`alpacare-official`:
AlpaCare's 167 clinician-crafted seeds), which are downloaded from their public address and
checked against a pinned SHA-256 before use; nothing published is copied into the project.
"""

from __future__ import annotations

import json
from pathlib import Path

from .published import PublishedError, fetch_bytes, is_reference, resolve

SEED_FIELDS = ("topic", "view", "type", "difficulty", "instruction", "input")
NO_INPUT = "<noinput>"

# named seed sets: published files (alpacare/published.py pins each by commit and checksum)
OFFICIAL_SEEDS = {
    "alpacare-official": "alpacare:data/med_seed.json",   # AlpaCare's 167 clinician-crafted seed tasks (CC BY-NC 4.0)
}


class SeedError(ValueError):
    pass


def is_official(entry: str | Path) -> bool:
    """A `seeds:` entry that names a published seed set (or a published file) rather than a local file."""
    return str(entry) in OFFICIAL_SEEDS or is_reference(entry)


def published_ref(entry: str | Path) -> str:
    return OFFICIAL_SEEDS.get(str(entry), str(entry))


def download_official(name: str, timeout: float = 60) -> bytes:
    """The published seed file's bytes, verified against its pin."""
    try:
        return fetch_bytes(published_ref(name), timeout)
    except PublishedError as err:
        raise SeedError(f"seeds '{name}': {err}. Or download the file elsewhere, check it and list its path under "
                        "'seeds:' instead") from None


def load_seeds(paths: list[str | Path]) -> list[dict]:
    """Read and check seed files (or official seed sets by name); every problem names the
    file, the item and the field."""
    seeds = []
    for path in paths:
        if is_official(path):
            raw, where = download_official(str(path)), f"{path} ({resolve(published_ref(path)).url})"
        else:
            try:
                raw, where = Path(path).read_bytes(), str(path)
            except FileNotFoundError:
                raise SeedError(f"{path}: seed file not found (known seed set names: {', '.join(OFFICIAL_SEEDS)})") from None
            except IsADirectoryError:
                raise SeedError(f"{path}: is a directory, not a seed file") from None
        seeds += parse_seed_file(raw, where)
    if not seeds:
        raise SeedError("no seed files given")
    return seeds


def parse_seed_file(raw: bytes, where: str) -> list[dict]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SeedError(f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start})") from None
    if not text.strip():
        raise SeedError(f"{where}: the file is empty")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise SeedError(f"{where}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    if not isinstance(items, list):
        raise SeedError(f"{where}: expected a JSON list of seed tasks, got {type(items).__name__}")
    if not items:
        raise SeedError(f"{where}: the list of seed tasks is empty")
    return [check_seed(item, f"{where}: item {n}") for n, item in enumerate(items)]


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
