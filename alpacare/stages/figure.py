"""Stage: one of the paper's figures (config `figures:`), beside its published numbers."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from .. import figures, judgevalidation, report
from .report import summaries

log = logging.getLogger("alpacare")


def make_figure(spec: dict, verdict_files: dict, output_files: dict, published_path, out: dict,
                validation_files=()) -> None:
    """One of the paper's figures (spec: a `figures:` entry with its judges filled in): out
    png, svg, csv, md, html. validation_files: results/judges/<judge>/validation.json of the
    figure's judges that were measured against people, for the caption."""
    rows, _ = summaries(verdict_files, output_files)
    published = figures.read_published(published_path) if published_path else None
    published_judge = published["judge"] if published else None
    cells = figures.published_cells(published, figures.paper_figures(spec), spec) if published else {}
    shown = figures.figure_rows(rows, spec, cells, published_judge)
    title = figures.figure_title(spec, published, shown, report.lc_caption(shown))
    measured = {Path(f).parent.name: judgevalidation.human_agreement_of(f) for f in validation_files}
    title += " " + "; ".join(judgevalidation.agreement_note(j, measured.get(j)) for j in spec["judges"]) + "."
    headers = {**report.HEADERS, **figures.figure_headers(shown, published_judge)}
    report.write_tables(shown, figures.FIGURE_COLUMNS, title, out["csv"], out["md"], None, out["html"], headers=headers)
    figures.plot_figure(shown, spec, [out["png"], out["svg"]], published_judge)
    for missing in figures.missing_judges(spec):
        log.warning("%s: the paper's judge %s did not judge this run; the figure says so", spec.get("title", ""), missing)
    log.info("%d cells, %d beside a published number (%s)", len(shown),
             sum(not math.isnan(r["published"]) for r in shown), figures.judge_note(spec, shown))
