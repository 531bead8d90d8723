"""Stage: the results tables and figure over every cell, and the numbers every table shares."""

from __future__ import annotations

import itertools
import logging

from .. import report, winrates
from ..io import read_json, read_jsonl

log = logging.getLogger("alpacare")


def summaries(verdict_files: dict, output_files: dict) -> tuple[list[dict], dict]:
    """(a row of report.COLUMNS per verdict file, key -> its verdict rows). verdict_files:
    (judge, reference, testset, model) -> path; output_files: (generator, testset) -> path,
    for the output lengths. Every table and figure gets its numbers here, with the same seed
    per cell, so they agree to the digit."""
    lengths = {key: {o["id"]: len(o["output"]) for o in read_json(path)} for key, path in output_files.items()}
    rows, verdicts = [], {}
    for key, path in verdict_files.items():
        judge, reference, testset, model = key
        verdicts[key] = read_jsonl(path)
        model_len, ref_len = lengths[(model, testset)], lengths[(reference, testset)]
        pair_lengths = {i: (model_len[i], ref_len[i]) for i in model_len if i in ref_len}
        summary = winrates.summarize(verdicts[key], lengths=pair_lengths, seed=winrates.stable_seed(*key))
        rows.append(dict(zip(report.KEYS, key), **summary))
    return rows, verdicts


def make_report(verdict_files: dict, output_files: dict, testset_files: dict, out: dict) -> None:
    """verdict_files: (judge, reference, testset, model) -> path; output_files: (generator,
    testset) -> path (for output lengths); testset_files: testset -> path (for difficulty).
    out: csv, md, tex, html, difficulty_*, agreement_* (csv, md, tex, html), png, svg."""
    difficulty = {name: {t["id"]: t["difficulty"] for t in read_jsonl(path) if "difficulty" in t}
                  for name, path in testset_files.items()}
    rows, verdicts = summaries(verdict_files, output_files)
    by_level = []
    for row, (key, rows_of_cell) in zip(rows, verdicts.items()):
        if row["invalid"]:
            log.warning("%s: %d judgment(s) without a verdict", "/".join(key), row["invalid"])
        testset = key[2]
        if difficulty.get(testset):
            by_level += [dict(zip(report.KEYS, key), **level) for level in
                         winrates.by_difficulty(rows_of_cell, difficulty[testset], seed=winrates.stable_seed(*key))]
    agreement = judge_agreement(verdicts)
    report.write_tables(rows, report.COLUMNS, report.winrates_title(rows), out["csv"], out["md"], out["tex"], out["html"])
    answered = report.answered_caption(rows)   # each judge's role and the model(s) that answered, on every table
    report.write_tables(by_level, report.DIFFICULTY_COLUMNS, report.DIFFICULTY_TITLE + answered, out["difficulty_csv"],
                        out["difficulty_md"], out["difficulty_tex"], out["difficulty_html"])
    report.write_tables(agreement, report.AGREEMENT_COLUMNS, report.AGREEMENT_TITLE + answered + (
        "" if agreement else " (No two judges saw the same pairs in this run.)"), out["agreement_csv"],
        out["agreement_md"], out["agreement_tex"], out["agreement_html"])
    report.plot_winrates(rows, [out["png"], out["svg"]])
    log.info("%d win rates, %d by difficulty, %d judge agreements", len(rows), len(by_level), len(agreement))


def judge_agreement(verdicts: dict) -> list[dict]:
    """Per pair of judges and test set, pooled over the (reference, model) cells both judged."""
    scored = {key: winrates.scored_items(rows) for key, rows in verdicts.items()}
    judges = list(dict.fromkeys(key[0] for key in verdicts))
    testsets = list(dict.fromkeys(key[2] for key in verdicts))
    out = []
    for first, second in itertools.combinations(judges, 2):
        for testset in testsets:
            cells = [(ref, model) for (judge, ref, t, model) in verdicts
                     if judge == first and t == testset and (second, ref, t, model) in verdicts]
            if not cells:
                continue
            # items of different cells are different pairs: key them by the cell too
            a = {(c, i): s for c in cells for i, s in scored[(first, c[0], testset, c[1])].items()}
            b = {(c, i): s for c in cells for i, s in scored[(second, c[0], testset, c[1])].items()}
            out.append({"judge": first, "other_judge": second, "testset": testset, "cells": len(cells),
                        **winrates.agreement(a, b)})
    return out
