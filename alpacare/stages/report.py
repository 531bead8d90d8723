"""Stage: the results tables and figures."""

from __future__ import annotations

from .. import judge, report
from ..io import read_jsonl


def make_report(verdict_files: dict, csv_path, md_path, figure_path) -> None:
    """verdict_files: (judge, reference, testset, model) -> path."""
    rows = [dict(zip(("judge", "reference", "testset", "model"), key), **judge.win_rate(read_jsonl(path)))
            for key, path in verdict_files.items()]
    report.write_tables(rows, csv_path, md_path)
    report.plot_winrates(rows, figure_path)
