"""Stages: task generation, dedup, responses."""

from __future__ import annotations

import logging

from .. import data, dedup, selfinstruct
from ..io import read_jsonl, write_json, write_jsonl
from ..llm import Request
from .common import finish, open_llm, raise_failures

log = logging.getLogger("alpacare")


def generate_tasks(seeds_path, out_tasks, out_rejects, *, teacher, spec, settings, model_dir, prompting,
                   run_seed, requests, examples_per_request, tasks_per_request, sampling) -> None:
    seeds = read_jsonl(seeds_path)
    if examples_per_request > len(seeds):
        raise ValueError(f"selfinstruct.examples_per_request is {examples_per_request}, but there are only {len(seeds)} seeds")
    llm, model = open_llm(teacher, spec, settings, model_dir)
    tagged = selfinstruct.build_requests(seeds, model=model, prompting=prompting, run_seed=run_seed, requests=requests,
                                         examples_per_request=examples_per_request, tasks_per_request=tasks_per_request,
                                         sampling=sampling)
    responses = llm.run([r for _, r in tagged])
    pairs = list(zip([t for t, _ in tagged], responses))
    tasks, rejects = selfinstruct.parse_replies(pairs, prompting)
    write_jsonl(out_tasks, tasks)
    write_jsonl(out_rejects, rejects)
    log.info("%d tasks parsed, %d rejected", len(tasks), len(rejects))
    finish(llm, "generate_tasks", endpoint=teacher)
    raise_failures(pairs, "task generation")


def dedup_tasks(tasks_path, seeds_path, out_tasks, out_report, *, threshold, policy) -> None:
    kept, rep = dedup.dedup(read_jsonl(tasks_path), read_jsonl(seeds_path), threshold, policy)
    write_jsonl(out_tasks, kept)
    write_json(out_report, rep)
    log.info("dedup (%s, > %.2f): kept %d of %d", policy, threshold, rep["kept"], rep["candidates"])


def respond(tasks_path, out, *, responder, spec, settings, model_dir, sampling, run_seed) -> None:
    tasks = read_jsonl(tasks_path)
    llm, model = open_llm(responder, spec, settings, model_dir)
    requests = [Request.chat(model, data.user_message(t["instruction"], t["input"]),
                             seed=selfinstruct.derived_seed(run_seed, "response", t["instruction"], t["input"]), **sampling)
                for n, t in enumerate(tasks)]
    responses = llm.run(requests)
    write_jsonl(out, [{**t, "output": r.text, "finish_reason": r.finish_reason, **({"error": r.error} if r.error else {})}
                      for t, r in zip(tasks, responses)])
    finish(llm, "respond", endpoint=responder)
    raise_failures(list(zip(range(len(tasks)), responses)), "response")
