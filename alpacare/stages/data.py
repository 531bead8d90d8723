"""Stages: checked seed tasks, training sets."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import data
from ..io import download, read_jsonl, read_records, write_json, write_jsonl
from ..seeds import load_seeds

log = logging.getLogger("alpacare")


def prepare_seeds(seed_files: list[str], out: str) -> None:
    seeds = load_seeds(seed_files)
    write_jsonl(out, seeds)
    log.info("%d seed tasks from %s", len(seeds), ", ".join(seed_files))


def build_dataset(out, *, responses_path=None, url=None) -> None:
    if responses_path:
        records = data.to_alpaca(read_jsonl(responses_path))
    else:
        tmp = Path(str(out) + ".download")
        download(url, tmp)
        records = read_records(tmp)
        tmp.unlink()
        for n, r in enumerate(records):
            if not all(isinstance(r.get(k), str) for k in ("instruction", "output")):
                raise ValueError(f"{url}: record {n} is not Alpaca format (instruction, input, output)")
    write_json(out, records)
    log.info("%d training records", len(records))
