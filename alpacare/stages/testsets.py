"""Stage: a test set as normalized JSONL."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import testsets
from ..io import read_records, write_jsonl
from ..published import fetch, url_of

log = logging.getLogger("alpacare")


def load_rows(out, *, path=None, url=None, hub=None) -> tuple[list[dict], str]:
    """The raw rows of a test set from a project file, a URL (file:// too), a published file
    (`alpacare:data/MedInstruct-test.jsonl`, checked against its pin) or a `datasets` hub dataset."""
    if hub:
        return hub_rows(hub), f"hub dataset {hub['name']}"
    if url:
        tmp = Path(str(out) + ".download")
        fetch(url, tmp)
        try:
            return read_records(tmp), url_of(url)
        finally:
            tmp.unlink()
    return read_records(path), path


def hub_rows(hub: dict) -> list[dict]:
    """hub: {name, config?, split, revision?, data_files?}, loaded with `datasets.load_dataset`
    (name 'json' with data_files reads local files the same way)."""
    import datasets

    kwargs = {k: hub[k] for k in ("revision", "data_files") if k in hub}
    dataset = datasets.load_dataset(hub["name"], hub.get("config"), split=hub.get("split", "test"), **kwargs)
    return [dict(row) for row in dataset]


def prepare_testset(out, *, path=None, url=None, hub=None, limit=None, fields=None, instruction=None,
                    match="instruction") -> None:
    rows, source = load_rows(out, path=path, url=url, hub=hub)
    items = testsets.normalize_testset(rows, source, limit, fields=fields, instruction=instruction, match=match)
    write_jsonl(out, items)
    log.info("%d test items from %s (of %d rows)", len(items), source, len(rows))
