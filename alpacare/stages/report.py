"""Stage: the results tables and figures."""

from __future__ import annotations

import logging

from .. import report, winrates
from ..io import read_json, read_jsonl

log = logging.getLogger("alpacare")


def make_report(verdict_files: dict, output_files: dict, testset_files: dict, out: dict) -> None:
    """verdict_files: (judge, reference, testset, model) -> path; output_files: (generator,
    testset) -> path (for output lengths); testset_files: testset -> path (for difficulty).
    out: csv, md, tex, html, difficulty_csv, difficulty_md, difficulty_tex, difficulty_html, png, svg."""
    lengths = {key: {o["id"]: len(o["output"]) for o in read_json(path)} for key, path in output_files.items()}
    difficulty = {name: {t["id"]: t["difficulty"] for t in read_jsonl(path) if "difficulty" in t}
                  for name, path in testset_files.items()}
    rows, by_level = [], []
    for key, path in verdict_files.items():
        judge, reference, testset, model = key
        verdicts = read_jsonl(path)
        model_len, ref_len = lengths[(model, testset)], lengths[(reference, testset)]
        pair_lengths = {i: (model_len[i], ref_len[i]) for i in model_len if i in ref_len}
        seed = winrates.stable_seed(*key)
        summary = winrates.summarize(verdicts, lengths=pair_lengths, seed=seed)
        rows.append(dict(zip(report.KEYS, key), **summary))
        if summary["invalid"]:
            log.warning("%s: %d judgment(s) without a verdict", "/".join(key), summary["invalid"])
        if difficulty.get(testset):
            by_level += [dict(zip(report.KEYS, key), **level)
                         for level in winrates.by_difficulty(verdicts, difficulty[testset], seed=seed)]
    report.write_tables(rows, report.COLUMNS, report.WINRATES_TITLE, out["csv"], out["md"], out["tex"], out["html"])
    report.write_tables(by_level, report.DIFFICULTY_COLUMNS, report.DIFFICULTY_TITLE, out["difficulty_csv"],
                        out["difficulty_md"], out["difficulty_tex"], out["difficulty_html"])
    report.plot_winrates(rows, [out["png"], out["svg"]])
    log.info("%d win rates, %d by difficulty", len(rows), len(by_level))
