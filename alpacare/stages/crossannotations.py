"""Stage: alpaca_eval's human cross-annotations, checked against their pin and format, and their
pairs as two output files for the judge stage (output_1 plays the reference, output_2 the model)."""

from __future__ import annotations

import json
import logging

from .. import crossannotations as ca
from ..io import atomic_path, read_json, write_json

log = logging.getLogger("alpacare")


def fetch_crossannotations(params: dict, out) -> None:
    """The people's file, refused unless it matches its pin and alpaca_eval's format."""
    data = ca.read_source(params)
    where = params.get("path") or params.get("url")
    try:
        rows = json.loads(data)
    except ValueError as err:
        raise ca.CrossAnnotationError(f"{where}: not JSON ({err})") from None
    ca.check_rows(rows, where)
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    log.info("%s: %d annotations of %d pairs with 4 or more", where, len(rows), len(ca.gold(rows)))


def write_pairs(crossannotations, limit, output_1, output_2) -> None:
    """The pairs to judge: output_1 as the reference's outputs, output_2 as the model's."""
    pair_list = ca.pairs(read_json(crossannotations), limit)
    first, second = ca.as_outputs(pair_list)
    write_json(output_1, first)
    write_json(output_2, second)
    log.info("%d pairs to judge in both orders%s", len(pair_list), f" (limit {limit})" if limit is not None else "")
