"""Stage: alpaca_eval's annotations.json and leaderboard.csv for one judge, reference and test set."""

from __future__ import annotations

import logging

from .. import leaderboard
from ..io import read_json, write_json
from .report import summaries

log = logging.getLogger("alpacare")


def make_leaderboard(judge: str, reference: str, testset: str, verdict_files: dict, output_files: dict,
                     out: dict) -> None:
    """alpaca_eval's annotations.json and leaderboard.csv for one judge, reference and test
    set; verdict_files: model -> path; output_files: generator -> path (this test set)."""
    keyed = {(judge, reference, testset, model): path for model, path in verdict_files.items()}
    rows, verdicts = summaries(keyed, {(g, testset): p for g, p in output_files.items()})
    reference_outputs = read_json(output_files[reference])
    records, board = [], {}
    for row, (key, cell_rows) in zip(rows, verdicts.items()):
        model = key[3]
        model_outputs = read_json(output_files[model])
        mine = leaderboard.annotations(cell_rows, model_outputs, reference_outputs, judge=judge, model=model,
                                       reference=reference, dataset=testset)
        records += mine
        board[model] = leaderboard.leaderboard_row(mine, model_outputs, row)
    write_json(out["annotations"], records)
    leaderboard.write_leaderboard(out["leaderboard"], board)
    log.info("%d annotations of %d model(s)", len(records), len(board))
