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
                         max_new_tokens=32, decoding="greedy") -> None:
    """kind: 'alpaca' (a tuned model or backbone with the project's template) or 'chat'.
    decoding: 'greedy' (one reply, read once) or 'medalpaca' (eval_usmle.py: sampled, tried
    again while the reply does not begin with an option, up to 5 tries; the last is read)."""
    qs = read_jsonl(questions_path)
    template = answers.load_template(template_path)
    llm, model = open_llm(generator, spec, settings, model_dir)
    tries = answers.MEDALPACA_TRIES if decoding == "medalpaca" else 1
    if decoding == "medalpaca":
        log.info("medAlpaca's decoding: temperature %s, top_p %s, top_k %s, %d new tokens, up to %d tries "
                 "(usmle max_new_tokens does not apply)", *answers.MEDALPACA_SAMPLING.values(),
                 answers.MEDALPACA_MAX_NEW_TOKENS, tries)
    replies: list[list] = [[] for _ in qs]
    todo = list(range(len(qs)))
    for attempt in range(tries):
        requests = [answers.generation_request(qs[n], template, kind=kind, model=model, max_new_tokens=max_new_tokens,
                                               decoding=decoding, attempt=attempt) for n in todo]
        for n, response in zip(todo, llm.run(requests)):
            replies[n].append(response)
        todo = [n for n in todo if replies[n][-1].ok and not answers.medalpaca_accepts(replies[n][-1].text)]
        if not todo:
            break
        if attempt + 1 < tries:
            log.info("try %d: %d repl(ies) do not begin with an option; sampling again", attempt + 1, len(todo))
    responses = [r[-1] for r in replies]
    prefix = template["answer_prefix"] if kind == "alpaca" else ""
    rows = []
    for q, r, attempts in zip(qs, responses, replies):
        letter, how = answers.extract_option(r.text, q["options"], prefix) if r.ok else (None, f"call failed: {r.error}")
        row = {"id": q["id"], "step": q["step"], "answer": q["answer"], "prediction": letter,
               "correct": letter == q["answer"], "unanswered": letter is None, "how": how,
               "reply": r.text, "finish_reason": r.finish_reason}
        if decoding != "greedy":
            row.update(decoding=decoding, tries=len(attempts), replies=[a.text for a in attempts])
        rows.append(row)
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

