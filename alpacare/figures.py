"""The paper's figures rebuilt (config `figures:`), beside the numbers the paper published.

AlpaCare's figures share one layout, kept here: a panel per test set, the models as groups
along the x axis, one bar per reference model in the paper's colours (or, with `bars: judges`,
one bar per judge side by side, as in its Figure 5), each with its bootstrap 95 % interval,
and a row of panels per judge (or per reference). Where the paper printed the number, a black
line across the bar marks it. The published numbers live in a small data file
(data/paper/alpacare_published.yaml) keyed by the labels the paper's figures use; a figure's
`names` maps config names to those labels, which the rebuilt figure shows too.

A judge is named by its role (the config's judge name: the paper's judge it stands for) and by
the model that answered (the verdict rows' `judge_model`), on the figure and in its table. A
published number was produced by the paper's judge (the data file's `judge`), so it is drawn
only beside that role's cells, and the difference column says which two models it compares.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import yaml

from .io import atomic_path

FIGURE_COLUMNS = ("judge", "judge_model", "testset", "model", "reference", "win_rate", "ci_low", "ci_high", "published",
                  "difference", "lc_win_rate", "lc_ci_low", "lc_ci_high", "items", "scored_items", "invalid",
                  "published_source", "lc_note")
FIGURE_HEADERS = {"published": "published (paper)", "difference": "rebuilt - published",
                  "published_source": "published in"}
# The paper's bar colours, by the reference's label in its figures; other references take tab10's
PAPER_COLORS = {"text-davinci-003": "#d0d0d0", "GPT-3.5-turbo": "#f5c342", "GPT-4": "#9cc97f", "Claude-2": "#8db9e3"}
JUDGE_COLORS = ("#f5c342", "#8db9e3", "#9cc97f", "#d0d0d0")   # judges side by side (bars: judges), in order


class PublishedError(ValueError):
    pass


def read_published(path: str | Path) -> dict:
    """The published numbers, checked: {source, judge, figures: {figure: {title?, panels:
    [{testset, source, values: {model: {reference: number or null}}}]}}}; any other shape is an
    error naming the file and the key."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PublishedError(f"{path}: no such file (a figure's `published`)") from None
    if not isinstance(data, dict) or not isinstance(data.get("figures"), dict):
        raise PublishedError(f"{path}: needs a mapping 'figures' (figure -> panels)")
    for key in ("source", "judge"):
        if not isinstance(data.get(key), str):
            raise PublishedError(f"{path}: needs a text field '{key}'")
    for figure, spec in data["figures"].items():
        panels = spec.get("panels") if isinstance(spec, dict) else None
        if not isinstance(panels, list) or not panels:
            raise PublishedError(f"{path}: figures.{figure}: needs a list 'panels'")
        for n, panel in enumerate(panels):
            where = f"{path}: figures.{figure}.panels.{n}"
            if not isinstance(panel, dict) or not all(isinstance(panel.get(k), str) for k in ("testset", "source")):
                raise PublishedError(f"{where}: needs text fields 'testset' and 'source'")
            values = panel.get("values")
            if not isinstance(values, dict):
                raise PublishedError(f"{where}: needs a mapping 'values' (model -> reference -> win rate)")
            for model, by_ref in values.items():
                if not isinstance(by_ref, dict):
                    raise PublishedError(f"{where}.values.{model}: needs a mapping reference -> win rate")
                for ref, value in by_ref.items():
                    if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 100):
                        raise PublishedError(f"{where}.values.{model}.{ref}: {value!r} is no win rate in %")
    return data


def paper_figures(spec: dict) -> list[str]:
    """The figures of the published file this figure draws numbers from (`paper_figure`)."""
    wanted = spec.get("paper_figure")
    return [] if not wanted else [wanted] if isinstance(wanted, str) else list(wanted)


def published_cells(published: dict, figure, spec: dict) -> dict:
    """(test set, model, reference) of the figure's grid, in config names -> (published win
    rate, where it was published), for the cells the paper has a number for. figure: a key of
    the published file, or a list of them (the first that has a cell's number gives it)."""
    keys = [] if figure is None else [figure] if isinstance(figure, str) else list(figure)
    for key in keys:
        if key not in published["figures"]:
            raise PublishedError(f"paper figure {key!r} is not in the published numbers (known: "
                                 f"{', '.join(published['figures'])})")
    names = spec.get("names", {})
    label = lambda name: names.get(name, name)  # noqa: E731
    cells = {}
    for key in keys:
        panels = {panel["testset"]: panel for panel in published["figures"][key]["panels"]}
        for testset in spec["testsets"]:
            panel = panels.get(label(testset))
            for model in spec["models"] if panel else []:
                for ref in spec["references"]:
                    value = panel["values"].get(label(model), {}).get(label(ref))
                    if value is not None and (testset, model, ref) not in cells:
                        cells[(testset, model, ref)] = (value, panel["source"])
    return cells


def missing_judges(spec: dict) -> list[str]:
    """The judges the paper drew this figure with that this run's figure lacks."""
    return [j for j in spec.get("paper_judges", []) if j not in spec["judges"]]


def answering_models(rows: list[dict]) -> list[str]:
    """The models that answered over some cells (their rows' `judge_models`), in order."""
    return list(dict.fromkeys(m for r in rows for m in r.get("judge_models", ())))


def played_by(judge: str, models: list[str]) -> str:
    """A judge by its role and by the model(s) that answered for it."""
    if not models:
        return f"{judge}'s role, played by a model its verdicts do not name"
    if len(models) == 1:
        return f"{judge}'s role, played by {models[0]}"
    return f"{judge}'s role, played by {' and '.join(models)} (several models answered)"


def judge_note(spec: dict, rows: list[dict]) -> str:
    """Who judged the figure (role and answering model per judge), and which of the paper's
    judges this run lacks."""
    roles = [played_by(j, answering_models([r for r in rows if r["judge"] == j])) for j in spec["judges"]]
    note = ("judge: " if len(roles) == 1 else "judges: ") + "; ".join(roles)
    missing = missing_judges(spec)
    if missing:
        note += (f"; the paper's {' and '.join(missing)} did not judge this run "
                 f"(add {'it' if len(missing) == 1 else 'them'} to evaluation.judges)")
    return note


def figure_rows(rows: list[dict], spec: dict, published: dict, published_judge: str | None = None) -> list[dict]:
    """The figure's cells in its order (judge, test set, model, reference), each with the
    published number and the difference where the paper has one and the cell's judge plays
    the role that produced it (published_judge); other judges' cells get none."""
    by_key = {(r["judge"], r["testset"], r["model"], r["reference"]): r for r in rows}
    out = []
    for judge in spec["judges"]:
        for testset in spec["testsets"]:
            for model in spec["models"]:
                for reference in spec["references"]:
                    row = dict(by_key[(judge, testset, model, reference)])
                    same_role = judge == published_judge
                    value, source = published.get((testset, model, reference), (None, "")) if same_role else (None, "")
                    row["published"] = math.nan if value is None else float(value)
                    row["difference"] = (round(row["win_rate"] - value, 2)
                                         if value is not None and not math.isnan(row["win_rate"]) else math.nan)
                    row["published_source"] = source
                    out.append(row)
    return out


def figure_headers(rows: list[dict], published_judge: str | None) -> dict:
    """The table's headers: the published and difference columns name the judges they compare."""
    headers = dict(FIGURE_HEADERS)
    compared = [r for r in rows if not math.isnan(r["published"])]
    if published_judge and compared:
        models = answering_models([r for r in rows if r["judge"] == published_judge])
        headers["published"] = f"published (paper, judge {published_judge})"
        headers["difference"] = (f"rebuilt - published ({' + '.join(models) or 'an unnamed model'} minus "
                                 f"the paper's {published_judge})")
    return headers


def _bar_layout(spec: dict) -> tuple[str, str]:
    """(what a model's bars are, what the rows of panels are): references and judges, or the reverse."""
    return ("judges", "references") if spec.get("bars") == "judges" else ("references", "judges")


def plot_figure(rows: list[dict], spec: dict, paths, published_judge: str | None = None) -> None:
    """The paper's layout (module docstring); rows from figure_rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt.rcParams["svg.hashsalt"] = "alpacare"  # stable element ids: the SVG is byte-identical on a rebuild
    names = spec.get("names", {})
    label = lambda name: names.get(name, name)  # noqa: E731
    bars_of, rows_of = _bar_layout(spec)
    bar_names, row_names, testsets, models = spec[bars_of], spec[rows_of], spec["testsets"], spec["models"]
    cells = {(r["judge"], r["testset"], r["model"], r["reference"]): r for r in rows}

    def cell(row_name, bar_name, testset, model):
        judge, reference = (row_name, bar_name) if bars_of == "references" else (bar_name, row_name)
        return cells[(judge, testset, model, reference)]

    def row_label(name):
        return f"judge {name}" if rows_of == "judges" else f"reference {label(name)}"

    if bars_of == "references":
        colors = [PAPER_COLORS.get(label(ref), plt.get_cmap("tab10").colors[i % 10]) for i, ref in enumerate(bar_names)]
        bar_labels = [label(ref) for ref in bar_names]
    else:
        colors = [JUDGE_COLORS[i % len(JUDGE_COLORS)] for i in range(len(bar_names))]
        bar_labels = [played_by(j, answering_models([r for r in rows if r["judge"] == j])) for j in bar_names]
    width = 0.8 / len(bar_names)
    panel_width = max(4.5, 1.2 + 1.05 * len(models))
    # a legend row per reference, or per two judges (their labels name the answering models: long)
    legend_rows = 1 if bars_of == "references" else math.ceil((len(bar_names) + 1) / 2)
    width_in, height_in = panel_width * len(testsets), 3.8 * len(row_names) + 0.6 + 0.3 * legend_rows
    fig, axes = plt.subplots(len(row_names), len(testsets), squeeze=False, sharey=True, figsize=(width_in, height_in))
    letters = "abcdefghijklmnopqrstuvwxyz"
    any_published = False
    for j, row_name in enumerate(row_names):
        for t, testset in enumerate(testsets):
            ax = axes[j][t]
            for k, bar_name in enumerate(bar_names):
                xs, values, low, high, marks = [], [], [], [], []
                for m, model in enumerate(models):
                    c = cell(row_name, bar_name, testset, model)
                    x = m + (k - (len(bar_names) - 1) / 2) * width
                    if not math.isnan(c["published"]):
                        marks.append((x, c["published"]))
                    if math.isnan(c["win_rate"]):
                        continue
                    xs.append(x)
                    values.append(c["win_rate"])
                    low.append(max(0.0, c["win_rate"] - c["ci_low"]) if not math.isnan(c["ci_low"]) else 0.0)
                    high.append(max(0.0, c["ci_high"] - c["win_rate"]) if not math.isnan(c["ci_high"]) else 0.0)
                ax.bar(xs, values, width, yerr=[low, high], capsize=1.5, color=colors[k], error_kw={"lw": 0.7})
                if marks:
                    any_published = True
                    xs_marked, ys_marked = zip(*marks)
                    ax.hlines(ys_marked, [x - width / 2 for x in xs_marked], [x + width / 2 for x in xs_marked],
                              color="black", lw=1.8, zorder=3)
            ax.axhline(50, color="grey", lw=0.6, ls="--")
            ax.set_xticks(range(len(models)), [label(m) for m in models], rotation=15 if len(models) > 4 else 0,
                          ha="right" if len(models) > 4 else "center", fontsize=8)
            ax.set_ylim(0, 100)
            ax.grid(axis="y", color="#e6e6e6", lw=0.6)
            ax.set_axisbelow(True)
            panel = f"({letters[t]}) {label(testset)}" if len(testsets) > 1 else label(testset)
            ax.set_title(panel + (f" - {row_label(row_name)}" if len(row_names) > 1 else ""), fontsize=9)
        if len(row_names) > 1:
            axes[j][0].set_ylabel(f"win rate (%), {row_label(row_name)}")
        else:
            against = row_name if rows_of == "references" else bar_names[0] if len(bar_names) == 1 else None
            axes[j][0].set_ylabel(f"win rate vs {label(against)} (%)" if against else "win rate vs reference (%)")
    handles = [Patch(color=colors[k], label=bar_labels[k]) for k in range(len(bar_names))]
    if any_published:
        handles.append(Line2D([], [], color="black", lw=1.8,
                              label=f"published (the paper's judge {published_judge})" if published_judge else "published"))
    ncol = len(handles) if bars_of == "references" else min(len(handles), 2)
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    title = spec.get("title", "")
    lines = textwrap.wrap(f"{title} (rebuilt; {judge_note(spec, rows)})" if title else f"rebuilt; {judge_note(spec, rows)}",
                          width=int(width_in * 11))   # wrapped to the figure's width (about 11 characters an inch)
    fig.suptitle("\n".join(lines), fontsize=10)
    fig.tight_layout(rect=(0, 0.3 * legend_rows / height_in, 1, 1))   # tight_layout makes room for the suptitle itself
    for path in paths:
        kind = Path(path).suffix.lstrip(".")
        with atomic_path(path) as tmp:
            # no creation date in the file, so a rebuild is byte-identical
            fig.savefig(tmp, format=kind, dpi=120, metadata={"Date": None} if kind in ("svg", "pdf") else {"Software": None})
    plt.close(fig)


def figure_title(spec: dict, published: dict | None, rows: list[dict], lc_caption: str) -> str:
    """The figure table's caption: what it shows, who judged (role and answering model), where
    the published numbers come from and which judges the difference compares, and why a
    length-controlled win rate is n/a where it is."""
    parts = [spec.get("title", ""), spec.get("caption", ""), f"Rebuilt; {judge_note(spec, rows)}."]
    if published is not None and paper_figures(spec):
        judge = published["judge"]
        if any(not math.isnan(r["published"]) for r in rows):
            models = answering_models([r for r in rows if r["judge"] == judge])
            parts.append(f"Published: {published['source'].strip()} (judge {judge}), beside {judge}'s cells only; "
                         f"'rebuilt - published' compares {' + '.join(models) or 'an unnamed model'} in {judge}'s role "
                         f"with the paper's {judge}.")
        elif judge not in spec["judges"]:
            parts.append(f"The paper's numbers (judge {judge}) are not drawn: no judge of this figure plays {judge}'s role.")
    return " ".join(p.strip() for p in parts if p and p.strip()) + lc_caption
