"""Stage: one training set in Alpaca format (results/data/{dataset}.json).

Sources: the self-instruct responses (alpacare.data.to_alpaca), or public instruction data
loaded with `datasets`: a hub id (Medical Meadow: medalpaca/medical_meadow_*), a URL or a
published file (`stanford_alpaca:alpaca_data.json`, checked against its pin) or a local JSON /
JSON Lines file. `columns` maps the Alpaca fields
to a source's own column names where they differ."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from .. import data
from ..io import read_jsonl, write_json
from ..published import fetch

log = logging.getLogger("alpacare")

FIELDS = ("instruction", "input", "output")


def load_public(spec: dict) -> list[dict]:
    """Rows of a hub, URL or local source, as loaded by `datasets`."""
    import datasets

    if "hub" in spec:
        table = datasets.load_dataset(spec["hub"], spec.get("subset"), split=spec.get("split", "train"),
                                      revision=spec.get("revision"))
    elif "url" in spec:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "download.json"
            fetch(spec["url"], local)
            table = datasets.load_dataset("json", data_files=str(local), split="train", cache_dir=tmp)
            return table.to_list()
    else:
        table = datasets.load_dataset("json", data_files=spec["path"], split="train")
    return table.to_list()


def to_records(rows: list[dict], spec: dict, where: str) -> list[dict]:
    """{instruction, input, output} per row; a missing input is empty, a missing instruction
    or output names the row and the column looked for."""
    columns = {field: spec.get("columns", {}).get(field, field) for field in FIELDS}
    records = []
    for n, row in enumerate(rows):
        for field in ("instruction", "output"):
            if not isinstance(row.get(columns[field]), str):
                raise ValueError(f"{where}: row {n} has no text column '{columns[field]}' for the Alpaca field "
                                 f"'{field}' (its columns: {', '.join(sorted(row))}); map it with 'columns'")
        records.append({"instruction": row[columns["instruction"]], "input": row.get(columns["input"]) or "",
                        "output": row[columns["output"]]})
    return records


def build_dataset(out, spec: dict, *, responses_path=None) -> None:
    if spec.get("source") == "selfinstruct":
        records = data.to_alpaca(read_jsonl(responses_path))
        where = str(responses_path)
    else:
        where = spec.get("hub") or spec.get("url") or spec["path"]
        records = to_records(load_public(spec), spec, where)
    if spec.get("count") is not None and len(records) != spec["count"]:
        raise ValueError(f"{where}: {len(records):,} records, but the config says this dataset has {spec['count']:,} "
                         "(datasets.*.count): not the file the config describes; nothing was written")
    write_json(out, records)
    log.info("%d training records from %s", len(records), where)
