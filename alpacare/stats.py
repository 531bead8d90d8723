"""Data statistics of an instruction set, as in the AlpaCare paper: its Table 2 (counts and
average lengths), the distributions of task type, topic, view and difficulty (top 20, the
repository's figures), length histograms, and the root verb / direct object breakdown of the
instructions (the paper's Figure 7, after Self-Instruct) with spaCy."""

from __future__ import annotations

from collections import Counter

from .seeds import NO_INPUT

METADATA = ("type", "topic", "view", "difficulty")


def words(text: str) -> int:
    return len(text.split())


def has_input(record: dict) -> bool:
    return bool(record.get("input", "").strip()) and record.get("input") != NO_INPUT


def describe(records: list[dict], top: int = 20) -> dict:
    """Counts, average lengths (whitespace words) and the top values of each metadata field."""
    n = len(records)
    inputs = [r["input"] for r in records if has_input(r)]

    def mean(values):
        values = list(values)
        return round(sum(values) / len(values), 2) if values else 0.0

    summary = {
        "records": n,
        "unique_instructions": len({r["instruction"].strip() for r in records}),
        "unique_instruction_input_pairs": len({(r["instruction"].strip(), r.get("input", "").strip()) for r in records}),
        "with_input": len(inputs),
        "avg_words": {
            "instruction": mean(words(r["instruction"]) for r in records),
            "input": mean(words(x) for x in inputs),
            "output": mean(words(r.get("output", "")) for r in records),
        },
        "distributions": {},
    }
    for field in METADATA:
        values = [str(r[field]).strip() for r in records if str(r.get(field, "")).strip()]
        if not values:
            continue
        counts = Counter(values)
        shown = counts.most_common(top)
        summary["distributions"][field] = {
            "records_with_field": len(values),
            "distinct": len(counts),
            "top": [{"value": v, "count": c, "share": round(c / len(values), 4)} for v, c in shown],
            "top_share": round(sum(c for _, c in shown) / len(values), 4),
        }
    return summary


def table_markdown(name: str, summary: dict) -> str:
    """Table 2 with the average lengths beside it, then one table per distribution."""
    avg = summary["avg_words"]
    lines = [
        f"# Statistics of {name}",
        "",
        "| statistic | value |",
        "|---|---:|",
        f"| records | {summary['records']:,} |",
        f"| unique instructions | {summary['unique_instructions']:,} |",
        f"| unique (instruction, input) pairs | {summary['unique_instruction_input_pairs']:,} |",
        f"| records with an input | {summary['with_input']:,} |",
        f"| average instruction length (words) | {avg['instruction']:.1f} |",
        f"| average input length (words, where present) | {avg['input']:.1f} |",
        f"| average output length (words) | {avg['output']:.1f} |",
    ]
    for field, dist in summary["distributions"].items():
        lines += ["", f"## {field} (top {len(dist['top'])} of {dist['distinct']} values: "
                      f"{100 * dist['top_share']:.1f}% of {dist['records_with_field']:,} records)", "",
                  f"| {field} | records | share |", "|---|---:|---:|"]
        lines += [f"| {row['value']} | {row['count']:,} | {100 * row['share']:.1f}% |" for row in dist["top"]]
    missing = [f for f in METADATA if f not in summary["distributions"]]
    if missing:
        lines += ["", f"Not in this dataset: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def length_histograms(records: list[dict], path) -> None:
    plt = _figure()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    series = {
        "instruction": [words(r["instruction"]) for r in records],
        "input (where present)": [words(r["input"]) for r in records if has_input(r)],
        "output": [words(r.get("output", "")) for r in records],
    }
    for ax, (label, values) in zip(axes, series.items()):
        ax.hist(values or [0], bins=40, color="#4c72b0")
        ax.set_title(f"{label}: {len(values):,} texts")
        ax.set_xlabel("words")
    axes[0].set_ylabel("texts")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def distribution_figure(summary: dict, path) -> None:
    plt = _figure()
    dists = summary["distributions"]
    fig, axes = plt.subplots(1, max(1, len(dists)), figsize=(5 * max(1, len(dists)), 6), squeeze=False)
    for ax, (field, dist) in zip(axes[0], dists.items()):
        rows = dist["top"][::-1]
        ax.barh([str(r["value"])[:40] for r in rows], [r["count"] for r in rows], color="#55a868")
        ax.set_title(f"{field}: top {len(rows)} ({100 * dist['top_share']:.0f}% of records)")
        ax.tick_params(axis="y", labelsize=8)
    if not dists:
        axes[0][0].text(0.5, 0.5, "no type/topic/view/difficulty fields in this dataset", ha="center", va="center")
        axes[0][0].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


# --- root verb / direct object (spaCy) ---------------------------------------------------

def load_spacy(models: list[str]):
    """(nlp, None), or (None, why not): no spaCy, or none of the pipelines installed."""
    try:
        import spacy
    except ImportError:
        return None, "spaCy is not installed (pip install spacy, then an English pipeline such as en_core_web_sm)"
    tried = []
    for name in models:
        try:
            return spacy.load(name, disable=["ner"]), None
        except (OSError, ImportError) as err:
            tried.append(f"{name} ({str(err).splitlines()[0][:80]})")
    return None, ("no spaCy English pipeline installed; tried " + "; ".join(tried) +
                  ". Install the official one with `python -m spacy download en_core_web_sm`")


def verb_object(doc) -> tuple[str, str] | None:
    """The root verb's lemma and its direct object's lemma (Self-Instruct's analysis), from
    the first sentence that has a verbal root with a direct object; None if there is none."""
    for sent in doc.sents:
        root = sent.root
        if root.pos_ != "VERB":
            continue
        for child in root.children:
            if child.dep_ in ("dobj", "obj"):
                return root.lemma_.lower(), child.lemma_.lower()
    return None


def verb_object_counts(instructions: list[str], nlp, batch_size: int = 256, progress=None) -> tuple[Counter, int]:
    """((verb, object) -> count, instructions without such a pair)."""
    pairs: Counter = Counter()
    missing = 0
    for n, doc in enumerate(nlp.pipe(instructions, batch_size=batch_size), 1):
        pair = verb_object(doc)
        if pair is None:
            missing += 1
        else:
            pairs[pair] += 1
        if progress and n % 5000 == 0:
            progress(n, len(instructions))
    return pairs, missing


def verb_summary(pairs: Counter, missing: int, top_verbs: int = 20, objects_per_verb: int = 4) -> dict:
    verbs: Counter = Counter()
    for (verb, _), c in pairs.items():
        verbs[verb] += c
    rows = []
    for verb, count in verbs.most_common(top_verbs):
        objects = Counter({o: c for (v, o), c in pairs.items() if v == verb}).most_common(objects_per_verb)
        rows.append({"verb": verb, "count": count, "objects": [{"object": o, "count": c} for o, c in objects]})
    total = sum(pairs.values())
    return {"with_verb_object": total, "without": missing, "distinct_verbs": len(verbs),
            "distinct_pairs": len(pairs), "top": rows}


def verbs_markdown(name: str, summary: dict) -> str:
    lines = [f"# Root verbs and direct objects of {name}'s instructions", "",
             f"{summary['with_verb_object']:,} instructions have a verb root with a direct object "
             f"({summary['without']:,} do not); {summary['distinct_verbs']:,} distinct verbs, "
             f"{summary['distinct_pairs']:,} distinct verb-object pairs. Model: {summary.get('model', '?')}.", "",
             "| verb | instructions | top direct objects |", "|---|---:|---|"]
    for row in summary["top"]:
        objs = ", ".join(f"{o['object']} ({o['count']})" for o in row["objects"])
        lines.append(f"| {row['verb']} | {row['count']:,} | {objs} |")
    return "\n".join(lines) + "\n"


def verbs_figure(summary: dict, path, title: str) -> None:
    """Two rings, as in the paper: root verbs inside, their top direct objects outside."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 8))
    rows = summary["top"]
    if not rows:
        ax.text(0.5, 0.5, "no verb-object pairs", ha="center", va="center")
        ax.axis("off")
    else:
        cmap = plt.get_cmap("tab20")
        inner = [r["count"] for r in rows]
        outer, outer_labels, outer_colors = [], [], []
        for i, r in enumerate(rows):
            shown = sum(o["count"] for o in r["objects"])
            for o in r["objects"]:
                outer.append(o["count"])
                outer_labels.append(o["object"] if o["count"] / sum(inner) > 0.006 else "")
                outer_colors.append(cmap(i % 20))
            outer.append(r["count"] - shown)  # the verb's other objects
            outer_labels.append("")
            outer_colors.append("white")
        ax.pie(inner, radius=0.65, labels=[r["verb"] for r in rows], labeldistance=0.55, colors=[cmap(i % 20) for i in range(len(rows))],
               wedgeprops={"width": 0.35, "edgecolor": "white"}, textprops={"fontsize": 8})
        ax.pie(outer, radius=1.0, labels=outer_labels, labeldistance=0.82, colors=outer_colors,
               wedgeprops={"width": 0.35, "edgecolor": "white", "alpha": 0.6}, textprops={"fontsize": 6})
    ax.set_title(title)
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def skipped_figure(path, why: str) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 2))
    ax.text(0.5, 0.5, "verb/object breakdown skipped:\n" + why[:200], ha="center", va="center", wrap=True, fontsize=8)
    ax.axis("off")
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
