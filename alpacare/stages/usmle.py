"""Stage: medAlpaca's USMLE self-assessment. Questions once; then each generator's answers by
greedy generation or by log-likelihood; then the table and figure over all of them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..io import read_jsonl, write_json, write_jsonl
from ..usmle import answers, questions as usmle_questions, scores
from .common import finish, open_llm, raise_failures

log = logging.getLogger("alpacare")


def prepare_questions(source: dict, out_questions, out_summary) -> None:
    """source: the config's usmle.questions section."""
    kept, summary = usmle_questions.load_questions(source, Path(out_questions).parent)
    for step, counts in summary["steps"].items():
        log.info("step %s: %d questions, %d with images removed, %d bad, %d kept", step, counts["questions"],
                 counts["with_images"], counts["bad"], counts["kept"])
    for bad in summary["bad_questions"]:
        log.warning("left out %s: %s", bad["id"], bad["problem"])
    write_jsonl(out_questions, kept)
    write_json(out_summary, summary)


def answer_by_generation(questions_path, template_path, out, *, generator, kind, spec, settings, model_dir=None,
                         max_new_tokens=32) -> None:
    """kind: 'alpaca' (a tuned model or backbone with the project's template) or 'chat'."""
    qs = read_jsonl(questions_path)
    template = answers.load_template(template_path)
    llm, model = open_llm(generator, spec, settings, model_dir)
    requests = [answers.generation_request(q, template, kind=kind, model=model, max_new_tokens=max_new_tokens) for q in qs]
    responses = llm.run(requests)
    prefix = template["answer_prefix"] if kind == "alpaca" else ""
    rows = []
    for q, r in zip(qs, responses):
        letter, how = answers.extract_option(r.text, q["options"], prefix) if r.ok else (None, f"call failed: {r.error}")
        rows.append({"id": q["id"], "step": q["step"], "answer": q["answer"], "prediction": letter,
                     "correct": letter == q["answer"], "unanswered": letter is None, "how": how,
                     "reply": r.text, "finish_reason": r.finish_reason})
    write_jsonl(out, rows)
    _log_accuracy(rows, generator, "generation")
    finish(llm, "usmle", generator=generator, method="generation")
    raise_failures(list(zip([q["id"] for q in qs], responses)), f"{generator} USMLE generation")


def answer_by_loglik(questions_path, template_path, out, *, generator, kind, spec, settings, model_dir,
                     normalisation="chars") -> None:
    """The option whose continuation the model finds likeliest; `normalisation` divides each
    sum of log-probabilities by the continuation's length in characters (lm-eval-harness's
    acc_norm) or tokens, or not at all ('none')."""
    qs = read_jsonl(questions_path)
    template = answers.load_template(template_path)
    llm, model = open_llm(generator, spec, settings, model_dir)
    requests = [answers.loglik_request(q, template, kind=kind, model=model) for q in qs]
    responses = llm.run(requests)
    count_tokens = _token_counter(model_dir) if normalisation == "tokens" else None
    rows = []
    for q, request, r in zip(qs, requests, responses):
        letters = list(q["options"])
        row = {"id": q["id"], "step": q["step"], "answer": q["answer"]}
        if r.ok:
            lengths = {"none": None, "chars": [len(c) for c in request.choices],
                       "tokens": count_tokens and [count_tokens(c) for c in request.choices]}[normalisation]
            letter, normalised = answers.choose(r.choice_logprobs, lengths, letters)
            row.update(prediction=letter, correct=letter == q["answer"], unanswered=letter is None,
                       logprobs=dict(zip(letters, (round(x, 4) for x in r.choice_logprobs))),
                       scores=dict(zip(letters, (round(x, 5) for x in normalised))))
        else:
            row.update(prediction=None, correct=False, unanswered=True, error=r.error)
        rows.append(row)
    write_jsonl(out, rows)
    _log_accuracy(rows, generator, "loglik")
    finish(llm, "usmle", generator=generator, method="loglik")
    raise_failures(list(zip([q["id"] for q in qs], responses)), f"{generator} USMLE log-likelihood")


def make_usmle_report(answer_files: dict, published_path, csv_path, md_path, figure_path, published_names=None) -> None:
    """answer_files: (method, generator) -> answers file; published_names: generator -> the name
    of the same model in medAlpaca's table, shown beside our number."""
    published = scores.load_published(published_path)
    rows = []
    for (method, generator), path in answer_files.items():
        for row in scores.summarise(read_jsonl(path)):
            name = (published_names or {}).get(generator)
            rows.append({"method": method, "generator": generator, **row,
                         "published": scores.published_accuracy(published, name, row["step"])})
    scores.write_tables(rows, published, csv_path, md_path)
    scores.plot(rows, published, figure_path)


def _token_counter(model_dir):
    from ..checkpoints import load_model

    _, tokenizer = load_model(model_dir)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def _log_accuracy(rows, generator, method) -> None:
    for row in scores.summarise(rows):
        log.info("%s %s step %s: %s", generator, method, row["step"],
                 json.dumps({k: row[k] for k in ("questions", "correct", "unanswered", "accuracy")}))

