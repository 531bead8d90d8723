"""Stage: a judge measured against people (alpaca_eval's human cross-annotations): its table, from
its verdicts on the pairs (stages.crossannotations writes them; the judge stage judges them exactly
as it judges the grid); and every judge's preferences on the grid's own pairs."""

from __future__ import annotations

import csv
import io
import logging

from .. import crossannotations as ca, judgevalidation as jv
from ..io import read_json, read_jsonl, write_json, write_text

log = logging.getLogger("alpacare")


def write_validation(judge_name, verdicts, crossannotations, output_1, *, source: dict, limit, out: dict,
                     published=jv.PUBLISHED, method: str = "reply") -> None:
    rows = read_json(crossannotations)
    pair_list = ca.pairs(rows, limit)
    if [p["id"] for p in pair_list] != [r["id"] for r in read_json(output_1)]:
        raise ca.CrossAnnotationError(f"{output_1}: not the pairs of {crossannotations} (limit {limit}); rerun its rule")
    people = jv.restrict(rows, pair_list)
    judge_metrics = jv.metrics(jv.judge_rows(pair_list, read_jsonl(verdicts)), ca.gold(people))
    anchors = jv.anchors(people)
    meta = {"pairs_judged": len(pair_list), "pairs_in_file": len(ca.gold(rows)), "limit": limit,
            "crossannotations": source.get("hub") or source.get("url") or source.get("path"),
            "sha256": source.get("sha256"), "method": method,
            "full_published_set": ca.is_full_published_set(source, limit, len(pair_list))}
    record = jv.report(judge_name, judge_metrics, anchors, jv.load_published(published), meta)
    write_json(out["json"], record)
    write_text(out["md"], jv.markdown(record))
    buffer = io.StringIO()
    table = jv.csv_rows(record)
    writer = csv.DictWriter(buffer, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_text(out["csv"], buffer.getvalue())
    log.info("%s: human agreement %.1f %% ± %.1f on %d pairs (humans %.1f, longest %.1f)", judge_name,
             judge_metrics["human_agreement"], judge_metrics["human_agreement_se"], len(pair_list),
             anchors["humans"]["human_agreement"], anchors["longest"]["human_agreement"])


def write_preferences(verdict_files: dict, output_files: dict, testset_files: dict, out: dict) -> None:
    """Position and length preferences of every judge on the planned cells (judgevalidation.grid_preferences)."""
    chars = {key: {o["id"]: len(o["output"]) for o in read_json(path)} for key, path in output_files.items()}
    difficulty = {name: {t["id"]: t["difficulty"] for t in read_jsonl(path) if "difficulty" in t}
                  for name, path in testset_files.items()}
    cells = []
    for (judge_name, reference, testset, model), path in verdict_files.items():
        model_chars, reference_chars = chars[(model, testset)], chars[(reference, testset)]
        lengths = {i: (model_chars[i], reference_chars[i]) for i in model_chars if i in reference_chars}
        cells.append((judge_name, testset, read_jsonl(path), lengths, difficulty.get(testset, {})))
    rows = jv.grid_preferences(cells)
    write_text(out["md"], jv.preferences_markdown(rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["judge"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out["csv"], buffer.getvalue())
    log.info("%d rows of judge preferences over %d cells", len(rows), len(cells))
