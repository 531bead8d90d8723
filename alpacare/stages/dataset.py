"""Stage: one training set in Alpaca format (from self-instruct responses, or a public file)."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import data
from ..io import download, read_jsonl, read_records, write_json

log = logging.getLogger("alpacare")


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
