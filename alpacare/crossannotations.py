"""alpaca_eval's human cross-annotations (`alpaca_farm_human_crossannotations` in the hub dataset
tatsu-lab/alpaca_eval): the file's format, where it comes from (pinned or refused), and the pairs a
judge is asked about. The metrics over them live in alpacare.judgevalidation, so that an edit to
the arithmetic re-judges nothing.

A record: instruction, output_1, output_2 (text), preference (1: output_1 is better, 2: output_2;
1.5 or a legacy 0: a tie; missing where unparsed), annotator_index, dataset, datasplit, as the
hub loader's features say. The n-th record of a pair, in file order, is its annotation n;
alpaca_eval keeps the pairs with at least 4 and the first 4 of each."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

KEYS = ("instruction", "output_1", "output_2")
N_ANNOTATORS = 4


FIELDS = {"instruction": str, "output_1": str, "output_2": str, "preference": (int, float)}

NAN = float("nan")


class CrossAnnotationError(ValueError):
    pass


def check_rows(rows, source: str = "cross-annotations") -> None:
    """Refuse a file that is not in alpaca_eval's cross-annotation format, naming the row and field."""
    if not isinstance(rows, list) or not rows:
        raise CrossAnnotationError(f"{source}: expected a non-empty JSON list of annotation records")
    for n, row in enumerate(rows):
        for field, kind in FIELDS.items():
            value = row.get(field) if isinstance(row, dict) else None
            if field == "preference" and value is None:
                continue
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CrossAnnotationError(f"{source}: record {n} has no {kind.__name__ if isinstance(kind, type) else 'number'} "
                                           f"field {field!r}")


def pref(value) -> float:
    return NAN if value is None else float(value)


def table(rows) -> dict[tuple, list[float]]:
    """Group annotation records by pair, in file order (the n-th record of a pair is index n)."""
    grouped: dict[tuple, list[float]] = {}
    for row in rows:
        grouped.setdefault(tuple(row[k] for k in KEYS), []).append(pref(row.get("preference")))
    return grouped


def count(values) -> int:
    return sum(not math.isnan(v) for v in values)


def select(annotations: dict, n: int | None, drop_extra: bool = True) -> dict:
    """alpaca_eval's _select_n_annotations: the first n annotations of each pair (drop_extra), and
    only the pairs with at least n parsed ones (n None: the fewest any pair has)."""
    if drop_extra:
        annotations = {k: v[:n] for k, v in annotations.items()}
    counts = {k: count(v) for k, v in annotations.items()}
    least = n or (min(counts.values()) if counts else 0)
    return {k: v for k, v in annotations.items() if counts[k] >= least}


def gold(rows) -> dict:
    """The people's table as alpaca_eval's Analyzer keeps it: pairs with 4 annotations, the first 4."""
    return select(table(rows), N_ANNOTATORS)


def gold_rows(rows) -> list[dict]:
    """The people's records that alpaca_eval keeps (pairs with 4 annotations, the first 4 each), in file order."""
    keep = gold(rows)
    taken: Counter = Counter()
    kept = []
    for row in rows:
        key = tuple(row[k] for k in KEYS)
        if key in keep and taken[key] < N_ANNOTATORS:
            taken[key] += 1
            kept.append(row)
    return kept


def pair_id(instruction: str, output_1: str, output_2: str) -> str:
    """A pair's identity from its content (never its position), for its verdict rows and cache entries."""
    digest = hashlib.sha256(json.dumps([instruction, output_1, output_2]).encode("utf-8")).hexdigest()
    return f"pair-{digest[:16]}"


def pairs(crossannotation_rows, limit: int | None = None) -> list[dict]:
    """The pairs alpaca_eval scores (4 annotations or more), in the order the file first names
    them; `limit`: the first so many, for a cheap first look."""
    kept = gold(crossannotation_rows)
    chosen = list(kept)[:limit] if limit is not None else list(kept)
    return [{"id": pair_id(*key), **dict(zip(KEYS, key))} for key in chosen]


def as_outputs(pair_list) -> tuple[list[dict], list[dict]]:
    """The pairs as two output files for the judge stage: output_1 plays the reference, output_2
    the model, so the `reference_first` order shows output_1 as (a)."""
    first = [{"id": p["id"], "instruction": p["instruction"], "input": "", "output": p["output_1"]} for p in pair_list]
    second = [{"id": p["id"], "instruction": p["instruction"], "input": "", "output": p["output_2"]} for p in pair_list]
    return first, second


HUB = "alpaca_eval-hub"
HUB_REPO = "tatsu-lab/alpaca_eval"
HUB_PATH = "alpaca_farm_human_crossannotations.json"
# Not pinned: the hub could not be read where this was written, and no public page we could read
# gave the file's LFS SHA-256. A pin given in the config (judge_validation.revision and .sha256)
# stands in; without either the job stops with CrossAnnotationPinMissing rather than trust a download.
HUB_REVISION: str | None = None
HUB_SHA256: str | None = None
FULL_PAIRS = 648  # the leaderboard's "# parsed" 2592 = 648 pairs x 4 people
# For a forecast before the file is here: a pair's instruction and outputs in characters, from
# the AlpacaFarm evaluation set's outputs alpaca_eval publishes (results/<model>/model_outputs.json,
# 805 instructions: mean instruction 165 characters, outputs 308 for text_davinci_003 and 396 for
# alpaca-7b, the era of models the people compared); 400 per output errs high.
ESTIMATED_PAIR_CHARS = {"instruction": 165, "output": 400}


class CrossAnnotationPinMissing(CrossAnnotationError):
    pass


def source_params(spec: dict) -> dict:
    """What decides the people's file, as a rule's params: a local path (checked against
    `sha256` if given), a URL with its SHA-256, or the hub file at a pinned revision."""
    where = spec.get("crossannotations", HUB)
    sha256 = spec.get("sha256")
    if where == HUB:
        revision = spec.get("revision") or HUB_REVISION
        sha256 = sha256 or HUB_SHA256
        url = f"https://huggingface.co/datasets/{HUB_REPO}/resolve/{revision}/{HUB_PATH}" if revision else None
        return {"hub": f"{HUB_REPO}:{HUB_PATH}", "url": url, "sha256": sha256}
    if str(where).startswith(("http://", "https://", "file:")):
        return {"url": where, "sha256": sha256}
    return {"path": str(where), "sha256": sha256}


def read_source(params: dict, root: Path = Path(".")) -> bytes:
    """The people's file's bytes, refused unless they match the pin."""
    from .published import read_url

    if "path" in params:
        data = (root / params["path"]).read_bytes()
    else:
        if not params.get("url") or not params.get("sha256"):
            what = params.get("hub") or params.get("url")
            raise CrossAnnotationPinMissing(
                f"{what}: no pinned {'revision and ' if 'hub' in params else ''}SHA-256, so a download could not be "
                "checked and is refused. Pin it in the config (judge_validation.revision: the hub commit; "
                "judge_validation.sha256: the file's SHA-256, as the hub's file page lists it) after checking the "
                "file, or give a local copy as judge_validation.crossannotations")
        data = read_url(params["url"])
    if params.get("sha256") and hashlib.sha256(data).hexdigest() != params["sha256"]:
        raise CrossAnnotationError(f"{params.get('path') or params.get('url')}: SHA-256 {hashlib.sha256(data).hexdigest()} "
                                   f"is not the pinned {params['sha256']}; refusing to use it")
    return data


def is_full_published_set(params: dict, limit: int | None, n_pairs: int) -> bool:
    """Whether a measurement stands on alpaca_eval's whole file (then the anchors must equal the
    leaderboard's)."""
    return "hub" in params and limit is None and n_pairs == FULL_PAIRS


def is_pinned(params: dict) -> bool:
    """Whether the people's file can be had and checked: a local path, or a download with its SHA-256."""
    return "path" in params or bool(params.get("url") and params.get("sha256"))
