"""The paper's figures rebuilt (config `figures:`), beside the numbers the paper published.

AlpaCare's Figures 2, 3, 4 and 6 share one layout, kept here: a panel per test set (a row of
panels per judge), the models as groups along the x axis, one bar per reference model in the
paper's colours, each with its bootstrap 95 % interval; where the paper printed the number,
a black line across the bar marks it. The published numbers live in a small data file
(data/paper/alpacare_published.yaml) keyed by the labels the paper's figures use; a figure's
`names` maps config names to those labels, which the rebuilt figure shows too.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import yaml

from .io import atomic_path

FIGURE_COLUMNS = ("judge", "testset", "model", "reference", "win_rate", "ci_low", "ci_high", "published",
                  "difference", "lc_win_rate", "lc_ci_low", "lc_ci_high", "items", "scored_items", "invalid",
                  "published_source", "lc_note")
FIGURE_HEADERS = {"published": "published (paper)", "difference": "rebuilt - published",
                  "published_source": "published in"}
# The paper's bar colours, by the reference's label in its figures; other references take tab10's
PAPER_COLORS = {"text-davinci-003": "#d0d0d0", "GPT-3.5-turbo": "#f5c342", "GPT-4": "#9cc97f", "Claude-2": "#8db9e3"}


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


def published_cells(published: dict, figure: str | None, spec: dict) -> dict:
    """(test set, model, reference) of the figure's grid, in config names -> (published win
    rate, where it was published), for the cells the paper's figure has a number for."""
    if figure is None:
        return {}
    if figure not in published["figures"]:
        raise PublishedError(f"paper figure {figure!r} is not in the published numbers (known: "
                             f"{', '.join(published['figures'])})")
    names = spec.get("names", {})
    label = lambda name: names.get(name, name)  # noqa: E731
    panels = {panel["testset"]: panel for panel in published["figures"][figure]["panels"]}
    cells = {}
    for testset in spec["testsets"]:
        panel = panels.get(label(testset))
        for model in spec["models"] if panel else []:
            for ref in spec["references"]:
                value = panel["values"].get(label(model), {}).get(label(ref))
                if value is not None:
                    cells[(testset, model, ref)] = (value, panel["source"])
    return cells


def figure_rows(rows: list[dict], spec: dict, published: dict) -> list[dict]:
    """The figure's cells in its order (judge, test set, model, reference), each with the
    published number and the difference where the paper has one."""
    by_key = {(r["judge"], r["testset"], r["model"], r["reference"]): r for r in rows}
    out = []
    for judge in spec["judges"]:
        for testset in spec["testsets"]:
            for model in spec["models"]:
                for reference in spec["references"]:
                    row = dict(by_key[(judge, testset, model, reference)])
                    value, source = published.get((testset, model, reference), (None, ""))
                    row["published"] = math.nan if value is None else float(value)
                    row["difference"] = (round(row["win_rate"] - value, 2)
                                         if value is not None and not math.isnan(row["win_rate"]) else math.nan)
                    row["published_source"] = source
                    out.append(row)
    return out


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
    judges, testsets, models, refs = spec["judges"], spec["testsets"], spec["models"], spec["references"]
    colors = [PAPER_COLORS.get(label(ref), plt.get_cmap("tab10").colors[i % 10]) for i, ref in enumerate(refs)]
    width = 0.8 / len(refs)
    panel_width = max(4.5, 1.2 + 1.05 * len(models))
    width_in, height_in = panel_width * len(testsets), 3.8 * len(judges) + 0.9
    fig, axes = plt.subplots(len(judges), len(testsets), squeeze=False, sharey=True, figsize=(width_in, height_in))
    cells = {(r["judge"], r["testset"], r["model"], r["reference"]): r for r in rows}
    letters = "abcdefghijklmnopqrstuvwxyz"
    any_published = False
    for j, judge in enumerate(judges):
        for t, testset in enumerate(testsets):
            ax = axes[j][t]
            for k, ref in enumerate(refs):
                xs, values, low, high, marks = [], [], [], [], []
                for m, model in enumerate(models):
                    cell = cells[(judge, testset, model, ref)]
                    x = m + (k - (len(refs) - 1) / 2) * width
                    if not math.isnan(cell["published"]):
                        marks.append((x, cell["published"]))
                    if math.isnan(cell["win_rate"]):
                        continue
                    xs.append(x)
                    values.append(cell["win_rate"])
                    low.append(max(0.0, cell["win_rate"] - cell["ci_low"]) if not math.isnan(cell["ci_low"]) else 0.0)
                    high.append(max(0.0, cell["ci_high"] - cell["win_rate"]) if not math.isnan(cell["ci_high"]) else 0.0)
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
            ax.set_title(panel + (f" - judge: {judge}" if len(judges) > 1 else ""), fontsize=9)
        axes[j][0].set_ylabel(f"win rate (%), judge {judge}" if len(judges) > 1 else "win rate vs reference (%)")
    handles = [Patch(color=colors[k], label=label(ref)) for k, ref in enumerate(refs)]
    if any_published:
        handles.append(Line2D([], [], color="black", lw=1.8,
                              label=f"published (judge {published_judge})" if published_judge else "published"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    title = spec.get("title", "")
    lines = []
    if title:   # wrapped to the figure's width (about 11 characters an inch at this size)
        lines = textwrap.wrap(f"{title} (rebuilt, judge: {', '.join(judges)})", width=int(width_in * 11))
        fig.suptitle("\n".join(lines), fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))   # tight_layout makes room for the suptitle itself
    for path in paths:
        kind = Path(path).suffix.lstrip(".")
        with atomic_path(path) as tmp:
            # no creation date in the file, so a rebuild is byte-identical
            fig.savefig(tmp, format=kind, dpi=120, metadata={"Date": None} if kind in ("svg", "pdf") else {"Software": None})
    plt.close(fig)


def figure_title(spec: dict, published: dict | None, rows: list[dict], lc_caption: str) -> str:
    """The figure table's caption: what it shows, where the published numbers come from, and
    why a length-controlled win rate is n/a where it is."""
    parts = [spec.get("title", ""), spec.get("caption", "")]
    if published is not None and any(not math.isnan(r["published"]) for r in rows):
        parts.append(f"Published: {published['source'].strip()} (judge {published['judge']}).")
    return " ".join(p.strip() for p in parts if p and p.strip()) + lc_caption
