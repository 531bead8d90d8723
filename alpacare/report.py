"""Results tables (CSV, Markdown, LaTeX, HTML) and the paper-style figure (PNG, SVG)."""

from __future__ import annotations

import csv
import html
import io
import math
from pathlib import Path

from .io import atomic_path, write_text

KEYS = ("judge", "reference", "testset", "model")
COLUMNS = (*KEYS, "win_rate", "se", "ci_low", "ci_high", "lc_win_rate", "lc_ci_low", "lc_ci_high", "tie_rate",
           "flip_rate", "win_rate_reference_first", "win_rate_model_first", "items", "scored_items", "invalid", "failed",
           "judge_model", "lc_note")
DIFFICULTY_COLUMNS = (*KEYS, "difficulty", "win_rate", "se", "ci_low", "ci_high", "items", "scored_items", "invalid")
AGREEMENT_COLUMNS = ("judge", "other_judge", "testset", "cells", "items", "identical", "kappa")
TEXT_COLUMNS = (*KEYS, "judge_model", "other_judge", "published_source", "lc_note")  # left-aligned; the rest are numbers
HEADERS = {
    "win_rate": "win rate", "se": "SE", "ci_low": "95% CI low", "ci_high": "95% CI high", "lc_win_rate": "LC win rate",
    "lc_ci_low": "LC 95% CI low", "lc_ci_high": "LC 95% CI high", "lc_note": "LC n/a because",
    "tie_rate": "ties", "flip_rate": "order flips", "win_rate_reference_first": "win rate (ref. first)",
    "win_rate_model_first": "win rate (model first)", "scored_items": "scored", "testset": "test set",
    "other_judge": "other judge", "judge_model": "answered by", "identical": "identical item scores", "kappa": "Cohen's kappa",
}
WINRATES_TITLE = ("Win rate (%) of each model against each reference, judged in both orders (win 1, tie 0.5, loss 0; "
                  "an item counts when both orders gave a verdict). SE and a bootstrap 95% interval over items; "
                  "LC: length-controlled win rate with its bootstrap 95% interval, shown where estimable ({rule}); "
                  "ties and order flips (items whose verdict changes with the order, each order judged by itself) "
                  "in %; invalid: judgments without a verdict.")
DIFFICULTY_TITLE = "Win rate (%) by the test item's difficulty (1 easiest, 5 hardest), with SE and a bootstrap 95% interval."
AGREEMENT_TITLE = ("Agreement of judges that saw the same pairs (model, reference, item), per test set: the share of "
                   "items both scored the same (item score averaged over both orders, %), and Cohen's kappa on the "
                   "item's outcome for the model (win / tie / loss); cells: model-reference pairs compared.")


def lc_rule() -> str:
    from .winrates import LC_MIN_ITEMS, LC_MIN_SIDE_SHARE

    return (f"at least {LC_MIN_ITEMS} scored items, and at least {LC_MIN_SIDE_SHARE:.0%} of them with the model's "
            "output longer than the reference's and as many with it shorter")


def winrates_title(rows: list[dict]) -> str:
    """The table's caption, with who answered for each judge and why the length-controlled
    win rate is n/a where it is."""
    return WINRATES_TITLE.format(rule=lc_rule()) + answered_caption(rows) + lc_caption(rows)


def answered_caption(rows: list[dict]) -> str:
    """Each judge (a role) with the model(s) that answered for it (column 'answered by')."""
    judges = {}
    for row in rows:
        judges.setdefault(row["judge"], {}).update(dict.fromkeys(row.get("judge_models", ())))
    parts = [f"{judge}'s role played by {' and '.join(models) if models else 'a model its verdicts do not name'}"
             + (" (several answered)" if len(models) > 1 else "") for judge, models in judges.items()]
    return f" Judges by role: {'; '.join(parts)}." if parts else ""


def lc_caption(rows: list[dict]) -> str:
    missing = [r for r in rows if r.get("lc_note")]
    if not missing:
        return ""
    shown = "; ".join(f"{'/'.join(str(r[k]) for k in KEYS)}: {r['lc_note']}" for r in missing[:8])
    more = f"; and {len(missing) - 8} more (column 'LC n/a because')" if len(missing) > 8 else ""
    return f" LC n/a for {len(missing)} of {len(rows)} cells: {shown}{more}."


def write_tables(rows: list[dict], columns, title: str, csv_path, md_path, tex_path, html_path, headers=None) -> None:
    """The same rows as CSV (column names as they are), and as Markdown, LaTeX and HTML with
    readable headers and the title as caption; a path of None is not written."""
    headers = headers or HEADERS
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(r[k]) for k in columns} for r in rows)
    write_text(csv_path, buffer.getvalue())
    for path, render in ((md_path, markdown), (tex_path, latex), (html_path, html_table)):
        if path is not None:
            write_text(path, render(rows, columns, title, headers))


def _cell(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def markdown(rows, columns, title, headers=HEADERS) -> str:
    lines = ["| " + " | ".join(headers.get(c, c) for c in columns) + " |",
             "|" + "|".join("---:" if c not in TEXT_COLUMNS else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows]
    return f"{title}\n\n" + "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def latex(rows, columns, title, headers=HEADERS) -> str:
    """A booktabs table, ready for \\input in a paper."""
    spec = "".join("l" if c in TEXT_COLUMNS else "r" for c in columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_tex(headers.get(c, c)) for c in columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(_cell(r[c])) for c in columns) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex(title)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def html_table(rows, columns, title, headers=HEADERS) -> str:
    """A self-contained HTML page: how `snakemake --report` shows the numbers."""
    head = "".join(f"<th>{html.escape(headers.get(c, c))}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(
        f"<td{'' if c in TEXT_COLUMNS else ' class=num'}>{html.escape(_cell(r[c]))}</td>" for c in columns) + "</tr>" for r in rows)
    style = ("body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse} "
             "th,td{border:1px solid #ccc;padding:3px 6px} td.num{text-align:right} caption{text-align:left;padding:4px 0}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title[:60])}</title>"
            f"<style>{style}</style></head><body>\n<table><caption>{html.escape(title)}</caption>\n"
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>\n</body></html>\n")


def plot_winrates(rows: list[dict], paths) -> None:
    """The paper's figure: one panel per test set (a row of panels per judge), the references
    as groups on the x axis, one bar per model, whiskers for the bootstrap 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "alpacare"  # stable element ids: the SVG is byte-identical on a rebuild
    judges = list(dict.fromkeys(r["judge"] for r in rows))
    testsets = list(dict.fromkeys(r["testset"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    colors = plt.get_cmap("tab10").colors
    width = 0.8 / max(1, len(models))
    fig, axes = plt.subplots(len(judges), len(testsets), squeeze=False, sharey=True,
                             figsize=(max(4.5, 1.6 + 1.1 * len(models)) * len(testsets), 3.6 * len(judges)))
    for row_axes, judge in zip(axes, judges):
        for ax, testset in zip(row_axes, testsets):
            panel = [r for r in rows if r["judge"] == judge and r["testset"] == testset]
            refs = list(dict.fromkeys(r["reference"] for r in panel))
            for m, model in enumerate(models):
                cells = {r["reference"]: r for r in panel if r["model"] == model}
                xs, values, low, high = [], [], [], []
                for x, ref in enumerate(refs):
                    cell = cells.get(ref)
                    if cell is None or math.isnan(cell["win_rate"]):
                        continue
                    xs.append(x + (m - (len(models) - 1) / 2) * width)
                    values.append(cell["win_rate"])
                    low.append(max(0.0, cell["win_rate"] - cell["ci_low"]) if not math.isnan(cell["ci_low"]) else 0.0)
                    high.append(max(0.0, cell["ci_high"] - cell["win_rate"]) if not math.isnan(cell["ci_high"]) else 0.0)
                ax.bar(xs, values, width, yerr=[low, high], capsize=2, color=colors[m % len(colors)],
                       label=model, error_kw={"lw": 0.8})
            ax.axhline(50, color="grey", lw=0.8, ls="--")
            ax.set_xticks(range(len(refs)), refs, rotation=20, ha="right", fontsize=8)
            ax.set_ylim(0, 100)
            answered = list(dict.fromkeys(m for r in panel for m in r.get("judge_models", ())))
            ax.set_title(f"{testset} (judge: {judge}'s role, played by {' and '.join(answered) or 'an unnamed model'})",
                         fontsize=9)
        row_axes[0].set_ylabel("win rate vs reference (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(models), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1 / len(judges) * (1 + (len(models) - 1) // 6), 1, 1))
    for path in paths:
        kind = Path(path).suffix.lstrip(".")
        with atomic_path(path) as tmp:
            # no creation date in the file, so a rebuild is byte-identical
            fig.savefig(tmp, format=kind, dpi=120, metadata={"Date": None} if kind in ("svg", "pdf") else {"Software": None})
    plt.close(fig)
