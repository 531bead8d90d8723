"""Stage: a test set as normalized JSONL."""

from __future__ import annotations

from pathlib import Path

from .. import testsets
from ..io import download, read_records, write_jsonl


def prepare_testset(out, *, path=None, url=None, limit=None) -> None:
    source = path or url
    if url:
        tmp = Path(str(out) + ".download")
        download(url, tmp)
        rows = read_records(tmp)
        tmp.unlink()
    else:
        rows = read_records(path)
    write_jsonl(out, testsets.normalize_testset(rows, source, limit))
