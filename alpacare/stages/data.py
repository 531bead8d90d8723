"""Stage: the checked seed tasks."""

from __future__ import annotations

import logging

from ..io import write_jsonl
from ..seeds import load_seeds

log = logging.getLogger("alpacare")


def prepare_seeds(seed_files: list[str], out: str) -> None:
    seeds = load_seeds(seed_files)
    write_jsonl(out, seeds)
    log.info("%d seed tasks from %s", len(seeds), ", ".join(seed_files))
