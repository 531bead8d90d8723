"""Stages: data statistics of a training set, the verb/object breakdown, the dataset card."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

from .. import stats
from ..data import to_alpaca
from ..io import atomic_path, read_json, read_jsonl, read_records, write_json, write_text
from ..published import resolve
from ..seeds import is_official, published_ref
from ..selfinstruct import TRUNCATED

log = logging.getLogger("alpacare")


def describe_dataset(dataset_path, *, name, out_summary, out_table, out_lengths, out_distributions, top=20) -> None:
    records = read_records(dataset_path)
    summary = stats.describe(records, top)
    write_json(out_summary, {"dataset": name, **summary})
    write_text(out_table, stats.table_markdown(name, summary))
    with atomic_path(out_lengths) as tmp:
        stats.length_histograms(records, tmp)
    with atomic_path(out_distributions) as tmp:
        stats.distribution_figure(summary, tmp)
    log.info("%s: %d records, %d unique instructions", name, summary["records"], summary["unique_instructions"])


def verb_breakdown(dataset_path, *, name, out_table, out_summary, out_figure, models, top=20) -> None:
    """The root verb / direct object breakdown; with no spaCy pipeline installed, every output
    says why it was skipped (and the job succeeds, so the rest of the run goes on)."""
    nlp, why = stats.load_spacy(list(models))
    if nlp is None:
        log.warning("verb/object breakdown of %s skipped: %s", name, why)
        write_json(out_summary, {"dataset": name, "skipped": why})
        write_text(out_table, f"# Root verbs and direct objects of {name}'s instructions\n\nSkipped: {why}\n")
        with atomic_path(out_figure) as tmp:
            stats.skipped_figure(tmp, why)
        return
    records = read_records(dataset_path)
    model = f"{nlp.meta.get('lang', '?')}_{nlp.meta.get('name', '?')} {nlp.meta.get('version', '')}".strip()
    log.info("verb/object breakdown of %d instructions with spaCy %s", len(records), model)
    pairs, missing = stats.verb_object_counts([r["instruction"] for r in records], nlp,
                                              progress=lambda n, total: log.info("parsed %d/%d instructions", n, total))
    summary = {"dataset": name, "model": model, **stats.verb_summary(pairs, missing, top)}
    write_json(out_summary, summary)
    write_text(out_table, stats.verbs_markdown(name, summary))
    with atomic_path(out_figure) as tmp:
        stats.verbs_figure(summary, tmp, f"{name}: top {len(summary['top'])} root verbs and their direct objects")


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def dataset_card(out, *, dataset, seeds_path, summary_path, rejects_path, report_path, responses_path, seed_sources, responder) -> None:
    """A Markdown card for a self-instruct training set: counts at every step, sources,
    models, prompts, dedup and reject statistics, fields."""
    seeds = read_jsonl(seeds_path)
    gen = read_json(summary_path)
    rejects = read_jsonl(rejects_path)
    report = read_json(report_path)
    responses = read_jsonl(responses_path)
    records = to_alpaca(responses)
    failed = sum(1 for r in responses if r.get("error"))
    empty = len(responses) - len(records)
    reasons = Counter(r["reason"].split(":")[0] for r in rejects)
    by_length = Counter(r.get("finish_reason") for r in responses)

    sources = []
    for s in seed_sources:
        if is_official(s):
            pin = resolve(published_ref(s))
            digest = f"SHA-256 `{pin.sha256}`" if pin.sha256 else f"git blob `{pin.git_blob}`"
            sources.append(f"- `{s}`: `{pin.ref}`, downloaded from <{pin.url}> ({digest})")
        else:
            sources.append(f"- `{s}`" + (f" (SHA-256 `{_digest(s)}`)" if Path(s).exists() else ""))

    def prompt_line(label, path, digest):
        return f"- {label}: `{path}` (SHA-256 `{digest}`)" if path else f"- {label}: none"

    target = f", target {gen['target_tasks']:,} surviving tasks" if gen.get("target_tasks") else ""
    lines = [
        f"# Dataset card: {dataset}",
        "",
        "Medical instruction-following data in Alpaca format (`instruction`, `input`, `output`) with the task's "
        "metadata (`type`, `topic`, `view`, `difficulty` 1-5), made by self-instruct after the AlpaCare paper: "
        "a teacher writes new tasks from sampled seed tasks, near-duplicates are removed by ROUGE-L, and a "
        "responder answers each task once.",
        "",
        "## Counts",
        "",
        "| step | count |",
        "|---|---:|",
        f"| seed tasks | {len(seeds):,} |",
        f"| requests to the teacher ({gen['rounds']} round(s), cap {gen['request_cap']:,}{target}) | {gen['requests']:,} |",
        f"| failed teacher calls | {gen['failed_calls']:,} |",
        f"| tasks parsed | {gen['tasks']:,} |",
        f"| blocks rejected by the parser | {len(rejects):,} |",
        f"| of which cut at the teacher's max_tokens (the reply's last task, dropped) | {reasons.get(TRUNCATED, 0):,} |",
        f"| dropped by dedup: too similar to a seed | {report.get('dropped_similar_to_seed', 0):,} |",
        f"| dropped by dedup: too similar to another task | {report.get('dropped_similar_to_task', 0):,} |",
        f"| beyond the target | {report.get('beyond_target', 0):,} |",
        f"| tasks kept | {report['kept']:,} |",
        f"| responses (failed calls: {failed:,}; cut at the token limit: {by_length.get('length', 0):,}) | {len(responses):,} |",
        f"| left out: empty output | {empty:,} |",
        f"| **training records** | **{len(records):,}** |",
        "",
        "## Sources",
        "",
        *sources,
        "",
        "## Models",
        "",
        f"- teacher: `{gen['teacher']}` ({gen['model']}), prompting `{gen['prompting']}`, sampling `{json.dumps(gen['sampling'])}`, "
        f"{gen['examples_per_request']} seed examples in, {gen['tasks_per_request']} tasks asked per request, run seed {gen['run_seed']}",
        f"- responder: `{responder.get('name')}` ({responder.get('model') or responder.get('backbone')}), sampling "
        f"`{json.dumps(responder.get('sampling'))}`; the input follows the instruction after a blank line",
        "",
        "## Prompts",
        "",
        prompt_line("generation template", gen["prompt"], gen["prompt_sha256"]),
        prompt_line("teacher system prompt", gen.get("system_prompt"), gen.get("system_prompt_sha256")),
        prompt_line("responder system prompt", responder.get("system_prompt"),
                    _digest(responder["system_prompt"]) if responder.get("system_prompt") and Path(responder["system_prompt"]).exists() else ""),
        "",
        "## Dedup",
        "",
        f"ROUGE-L F1 (the `rouge-score` package's definition: its tokenizer, no stemmer) above {report['threshold']} "
        f"against the seeds and between tasks, policy `{report['policy']}`; {report['candidates']:,} candidates, "
        f"{report['kept']:,} kept, {report.get('pairs_scored', 0):,} pairs scored exactly (the others were ruled out by exact bounds). "
        "Every dropped task, with what it matched and the score, is in `results/selfinstruct/dedup_report.json`.",
        "",
        "## Rejects",
        "",
        "Blocks the parser could not read, kept with their raw text in `results/selfinstruct/rejects.jsonl`:",
        "",
        "| reason | blocks |",
        "|---|---:|",
        *[f"| {reason} | {count:,} |" for reason, count in reasons.most_common()],
        *(["| (none) | 0 |"] if not reasons else []),
        "",
    ]
    if any(is_official(s) for s in seed_sources):
        lines += ["## Licence", "", "Built from AlpaCare's seed tasks, which are licensed CC BY-NC 4.0.", ""]
    write_text(out, "\n".join(lines))
    log.info("card for %s: %d training records", dataset, len(records))
