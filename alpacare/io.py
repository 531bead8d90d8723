"""Reading and atomically writing the pipeline's artifacts."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it into place only on success,
    so a killed job never leaves a half-written artifact that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_text(path: str | Path) -> str:
    """A UTF-8 file's text; otherwise an error naming the file, line and column."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ValueError(f"{path}: line {line}, column {column}: not UTF-8 text "
                         f"(byte 0x{data[err.start]:02x}); save the file as UTF-8") from None


def read_json(path: str | Path):
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}, column {err.colno}: not valid JSON ({err.msg})") from None


def read_jsonl(path: str | Path) -> list:
    return _parse_jsonl(read_text(path), path)


def _parse_jsonl(text: str, path) -> list:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {n}: not valid JSON ({err.msg})") from None
    return rows


def read_records(path: str | Path) -> list:
    """A JSON list or JSON Lines file, whichever it is; every problem names the file and line."""
    text = read_text(path)
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {err.lineno}, column {err.colno}: not valid JSON ({err.msg})") from None
    else:
        rows = _parse_jsonl(text, path)
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {n}: expected a JSON object, got {type(row).__name__}")
    return rows
