"""Stages: task generation, dedup, responses."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter

from .. import dedup, selfinstruct
from ..io import read_jsonl, write_json, write_jsonl
from .common import finish, open_llm, raise_failures

log = logging.getLogger("alpacare")
CHUNK = 256  # requests per progress line; the LLM layer still runs each chunk concurrently / batched


def run_with_progress(llm, requests, what: str):
    """llm.run over chunks, logging how far it got, so a 52k-call job shows its progress."""
    responses, start = [], time.monotonic()
    for begin in range(0, len(requests), CHUNK):
        responses += llm.run(requests[begin : begin + CHUNK])
        done = len(responses)
        if len(requests) > CHUNK:
            elapsed = time.monotonic() - start
            failed = sum(not r.ok for r in responses)
            log.info("%s: %d/%d (%.0f%%), %d cached, %d failed, %.0f s, about %.0f s to go", what, done, len(requests),
                     100 * done / len(requests), sum(r.cached for r in responses), failed, elapsed,
                     elapsed / done * (len(requests) - done))
    return responses


def generate_tasks(seeds_path, out_tasks, out_rejects, out_summary=None, *, teacher, spec, settings, model_dir, prompting,
                   run_seed, requests, examples_per_request, tasks_per_request, sampling, prompt_path, system_path=None,
                   target_tasks=None, dedup_settings=None) -> None:
    """Ask the teacher for tasks. Without `target_tasks`: exactly `requests` requests. With it:
    rounds of requests, deduplicating as they come, until `target_tasks` tasks survive the
    dedup (the same filter the dedup rule applies) or `requests` (the cap) have been asked."""
    seeds = read_jsonl(seeds_path)
    if examples_per_request > len(seeds):
        raise ValueError(f"selfinstruct.examples_per_request is {examples_per_request}, but there are only {len(seeds)} seeds")
    prompts = selfinstruct.generation_prompts(str(prompt_path), system_path and str(system_path), prompting)
    template, system, layout = prompts["template"], prompts["system"], prompts["layout"]
    llm, model = open_llm(teacher, spec, settings, model_dir)
    deduper = None
    if target_tasks:
        dedup_settings = dedup_settings or {}
        deduper = dedup.Deduper(seeds, dedup_settings.get("threshold", 0.7), dedup_settings.get("policy", "keep-first"))
    tasks, rejects, pairs, issued, rounds = [], [], [], 0, 0
    while issued < requests:
        if deduper is None:
            size = requests
        else:
            kept = deduper.kept_count()
            if kept >= target_tasks:
                break
            # survivors per request so far (optimistic before the first round), 10% to spare
            per_request = kept / issued if issued and kept else tasks_per_request
            size = math.ceil((target_tasks - kept) / per_request * (1.1 if issued else 1.0))
        size = max(1, min(size, requests - issued))
        tagged = selfinstruct.build_requests(
            seeds, model=model, prompting=prompting, run_seed=run_seed, requests=size, first=issued,
            examples_per_request=examples_per_request, tasks_per_request=tasks_per_request, sampling=sampling,
            template=template, system=system, layout=layout)
        responses = run_with_progress(llm, [r for _, r in tagged], f"generation round {rounds + 1}")
        round_pairs = list(zip([t for t, _ in tagged], responses))
        new_tasks, new_rejects = selfinstruct.parse_replies(round_pairs, prompting, layout)
        tasks += new_tasks
        rejects += new_rejects
        pairs += round_pairs
        issued += size
        rounds += 1
        if deduper is not None:
            deduper.add(new_tasks)
            log.info("round %d: requests %d-%d, %d tasks parsed, %d rejected, %d of %d target survive dedup",
                     rounds, issued - size, issued - 1, len(new_tasks), len(new_rejects), deduper.kept_count(), target_tasks)
    write_jsonl(out_tasks, tasks)
    write_jsonl(out_rejects, rejects)
    if out_summary:
        write_json(out_summary, {
            "teacher": teacher, "model": model if spec.get("provider") != "local" else spec.get("backbone"),
            "prompting": prompting, "layout": layout,
            **{k: prompts[k] for k in ("prompt", "prompt_sha256", "system_prompt", "system_prompt_sha256")},
            "sampling": sampling, "run_seed": run_seed, "examples_per_request": examples_per_request,
            "tasks_per_request": tasks_per_request, "request_cap": requests, "target_tasks": target_tasks,
            "requests": issued, "rounds": rounds, "failed_calls": sum(not r.ok for _, r in pairs),
            "tasks": len(tasks), "rejects": len(rejects),
            "truncated_replies": sum(reason_kind(r["reason"]) == selfinstruct.TRUNCATED for r in rejects),
            "reject_reasons": dict(Counter(reason_kind(r["reason"]) for r in rejects).most_common()),
            "surviving_dedup": deduper.kept_count() if deduper else None,
        })
    log.info("%d requests in %d round(s): %d tasks parsed, %d rejected", issued, rounds, len(tasks), len(rejects))
    if deduper is not None and deduper.kept_count() < target_tasks:
        log.warning("only %d tasks survive dedup after the cap of %d requests (target %d)", deduper.kept_count(), requests, target_tasks)
    finish(llm, "generate_tasks", endpoint=teacher)
    raise_failures(pairs, "task generation")


def reason_kind(reason: str) -> str:
    """A reject reason without the quoted text, for counting ("difficulty not 1-5: 'x'" -> "difficulty not 1-5")."""
    return reason.split(":")[0]


def dedup_tasks(tasks_path, seeds_path, out_tasks, out_report, *, threshold, policy, target_tasks=None) -> None:
    tasks, seeds = read_jsonl(tasks_path), read_jsonl(seeds_path)
    log.info("dedup (%s, ROUGE-L > %.2f) of %d tasks against %d seeds", policy, threshold, len(tasks), len(seeds))
    start = time.monotonic()
    kept, rep = dedup.dedup(tasks, seeds, threshold, policy, limit=target_tasks)
    write_jsonl(out_tasks, kept)
    write_json(out_report, rep)
    log.info("dedup (%s, > %.2f): kept %d of %d (%d like a seed, %d like another task, %d beyond the target) in %.1f s",
             policy, threshold, rep["kept"], rep["candidates"], rep["dropped_similar_to_seed"], rep["dropped_similar_to_task"],
             rep["beyond_target"], time.monotonic() - start)


def respond(tasks_path, out, *, responder, spec, settings, model_dir, sampling, run_seed, system_path=None) -> None:
    tasks = read_jsonl(tasks_path)
    system = selfinstruct.read_prompt(system_path)
    llm, model = open_llm(responder, spec, settings, model_dir)
    requests = [selfinstruct.response_request(model, t, run_seed=run_seed, system=system, sampling=sampling) for t in tasks]
    responses = run_with_progress(llm, requests, "responses")
    write_jsonl(out, [{**t, "output": r.text, "finish_reason": r.finish_reason, **({"error": r.error} if r.error else {})}
                      for t, r in zip(tasks, responses)])
    finish(llm, "respond", endpoint=responder)
    raise_failures([(t["instruction"][:60], r) for t, r in zip(tasks, responses)], "response")
