"""Win-rate tables (CSV, Markdown) and the paper-style figure."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from .io import atomic_path, write_text

COLUMNS = ("judge", "reference", "testset", "model", "win_rate", "items", "scored_items", "unparseable_replies", "order_agreement")


def write_tables(rows: list[dict], csv_path, md_path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: r[k] for k in COLUMNS} for r in rows)
    write_text(csv_path, buffer.getvalue())
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r[k]) for k in COLUMNS) + " |")
    write_text(md_path, "Win rate (%) of each model against each reference output, judged in both orders.\n\n" + "\n".join(lines) + "\n")


def _cell(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return str(value)


def plot_winrates(rows: list[dict], path) -> None:
    """One panel per (judge, test set); grouped bars: reference on x, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["judge"], r["testset"]) for r in rows})
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.5, 2 + 1.2 * len(models)) * len(panels), 3.6), squeeze=False)
    for ax, (judge, testset) in zip(axes[0], panels):
        refs = sorted({r["reference"] for r in rows if r["judge"] == judge and r["testset"] == testset})
        width = 0.8 / max(1, len(models))
        for m, model in enumerate(models):
            values = []
            for ref in refs:
                match = [r["win_rate"] for r in rows if (r["judge"], r["testset"], r["reference"], r["model"]) == (judge, testset, ref, model)]
                values.append(match[0] if match and not math.isnan(match[0]) else 0.0)
            ax.bar([x + m * width for x in range(len(refs))], values, width, label=model)
        ax.axhline(50, color="grey", lw=0.8, ls="--")
        ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(refs))], refs, rotation=20, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel("win rate vs reference (%)")
        ax.set_title(f"{testset}\njudge: {judge}", fontsize=9)
    axes[0][-1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=120)
    plt.close(fig)
