"""Accuracy per generator, method and step with a Wilson 95 % interval, as CSV and Markdown
tables and a figure beside medAlpaca's published numbers."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import yaml

from ..io import atomic_path, write_text

Z95 = 1.959963984540054
COLUMNS = ("method", "generator", "step", "questions", "correct", "unanswered", "accuracy", "ci_low", "ci_high", "published")
ALL_STEPS = "all"


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion: unlike the normal approximation it
    stays inside [0, 1] and is honest for the small counts of one USMLE step."""
    if n == 0:
        return math.nan, math.nan
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(rows: list[dict]) -> list[dict]:
    """Per step, and over all steps, from one answers file's rows ({step, correct, unanswered})."""
    steps = sorted({r["step"] for r in rows}, key=_step_order)
    groups = [(s, [r for r in rows if r["step"] == s]) for s in steps]
    if len(steps) > 1:
        groups.append((ALL_STEPS, rows))
    out = []
    for step, group in groups:
        correct = sum(bool(r["correct"]) for r in group)
        low, high = wilson(correct, len(group))
        out.append({"step": step, "questions": len(group), "correct": correct,
                    "unanswered": sum(bool(r["unanswered"]) for r in group),
                    "accuracy": correct / len(group) if group else math.nan, "ci_low": low, "ci_high": high})
    return out


def load_published(path: str | Path) -> dict:
    """medAlpaca's table: {source, models: [{name, step1, step2, step3}]}; TBA entries are null."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or "source" not in data:
        raise ValueError(f"{path}: expected a mapping with 'source' and a list 'models' of {{name, step1, step2, step3}}")
    for n, row in enumerate(data["models"]):
        if "name" not in row:
            raise ValueError(f"{path}: models.{n} has no name")
    return data


def published_accuracy(published: dict, name: str | None, step: str):
    if not name:
        return None
    for row in published["models"]:
        if row["name"] == name:
            return row.get(f"step{step}")
    raise ValueError(f"usmle.published_names: no model named {name!r} in medAlpaca's table "
                     f"(known: {', '.join(r['name'] for r in published['models'])})")


def write_tables(rows: list[dict], published: dict, csv_path, md_path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv(r.get(k)) for k in COLUMNS} for r in rows)
    write_text(csv_path, buffer.getvalue())
    lines = [
        "USMLE self-assessment: accuracy per generator, method and step (unanswered replies count as wrong),",
        "with a Wilson 95 % interval.",
        "",
        "| method | generator | step | questions | correct | unanswered | accuracy | 95 % CI | medAlpaca's number |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = "n/a" if math.isnan(r["ci_low"]) else f"{r['ci_low']:.3f}-{r['ci_high']:.3f}"
        pub = "" if r.get("published") is None else f"{r['published']:.3f}"
        lines.append(f"| {r['method']} | {r['generator']} | {r['step']} | {r['questions']} | {r['correct']} | "
                     f"{r['unanswered']} | {_fmt(r['accuracy'])} | {ci} | {pub} |")
    lines += ["", f"medAlpaca's published accuracies ({published['source']}):", "",
              "| model | step 1 | step 2 | step 3 |", "|---|---|---|---|"]
    for row in published["models"]:
        lines.append(f"| {row['name']} | " + " | ".join(_fmt(row.get(f"step{s}")) for s in "123") + " |")
    write_text(md_path, "\n".join(lines) + "\n")


def plot(rows: list[dict], published: dict, path) -> None:
    """One panel per step: medAlpaca's published accuracies (grey) and ours (colour, with the
    95 % interval), so the two can be read side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted({r["step"] for r in rows if r["step"] != ALL_STEPS}, key=_step_order)
    ours = sorted({(r["method"], r["generator"]) for r in rows})
    theirs = [p for p in published["models"] if any(p.get(f"step{s}") is not None for s in "123")]
    labels = [f"{g} ({m})" for m, g in ours] + [f"{p['name']} (medAlpaca)" for p in theirs]
    height = 0.25 * len(labels) + 1.2
    fig, axes = plt.subplots(1, len(steps), figsize=(3.6 * len(steps) + 2.5, height), sharey=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, step in zip(axes[0], steps):
        y = 0
        for n, (method, generator) in enumerate(ours):
            match = [r for r in rows if (r["method"], r["generator"], r["step"]) == (method, generator, step)]
            if match and not math.isnan(match[0]["accuracy"]):
                r = match[0]
                ax.barh(y, r["accuracy"], color=colours[n % len(colours)],
                        xerr=[[r["accuracy"] - r["ci_low"]], [r["ci_high"] - r["accuracy"]]], capsize=2)
            y += 1
        for p in theirs:
            value = p.get(f"step{step}")
            if value is not None:
                ax.barh(y, value, color="0.7")
            y += 1
        ax.set_xlim(0, 1)
        ax.set_title(f"Step {step}" if step.isdigit() else str(step), fontsize=9)
        ax.set_xlabel("accuracy")
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=7)
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=120)
    plt.close(fig)


def _step_order(step: str):
    return (0, int(step), "") if str(step).isdigit() else (1, 0, str(step))


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}"


def _csv(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else value
