"""One function per pipeline stage: plain paths and settings in, artifacts out.
Snakemake scripts only unpack `snakemake.*` and call these; tests call them directly."""

from __future__ import annotations

import logging
from pathlib import Path

from . import data, dedup, judge, report, selfinstruct
from .io import download, read_json, read_jsonl, read_records, write_json, write_jsonl
from .llm import Request, make_llm, model_id
from .seeds import load_seeds

log = logging.getLogger("alpacare")
LEDGER = "results/ledger.jsonl"


def _llm(name, spec, settings, model_dir):
    llm = make_llm(name, spec, settings, model_dir=model_dir)
    return llm, model_id(spec, model_dir)


def _finish(llm, stage: str, **context) -> None:
    summary = llm.ledger.summary()
    log.info("%s: %s", stage, summary)
    llm.ledger.append_to(LEDGER, stage=stage, **context)


def _raise_failures(tagged_responses, what: str) -> None:
    """After everything else is written and cached, fail loudly naming the failed items."""
    failed = [(tag, r.error) for tag, r in tagged_responses if not r.ok]
    if failed:
        shown = "; ".join(f"{tag}: {err}" for tag, err in failed[:5])
        raise RuntimeError(f"{len(failed)} {what} call(s) failed (completed calls are cached; rerun to resume): {shown}")


def prepare_seeds(seed_files: list[str], out: str) -> None:
    seeds = load_seeds(seed_files)
    write_jsonl(out, seeds)
    log.info("%d seed tasks from %s", len(seeds), ", ".join(seed_files))


def generate_tasks(seeds_path, out_tasks, out_rejects, *, teacher, spec, settings, model_dir, prompting,
                   run_seed, requests, examples_per_request, tasks_per_request, sampling) -> None:
    seeds = read_jsonl(seeds_path)
    if examples_per_request > len(seeds):
        raise ValueError(f"selfinstruct.examples_per_request is {examples_per_request}, but there are only {len(seeds)} seeds")
    llm, model = _llm(teacher, spec, settings, model_dir)
    tagged = selfinstruct.build_requests(seeds, model=model, prompting=prompting, run_seed=run_seed, requests=requests,
                                         examples_per_request=examples_per_request, tasks_per_request=tasks_per_request,
                                         sampling=sampling)
    responses = llm.run([r for _, r in tagged])
    pairs = list(zip([t for t, _ in tagged], responses))
    tasks, rejects = selfinstruct.parse_replies(pairs, prompting)
    write_jsonl(out_tasks, tasks)
    write_jsonl(out_rejects, rejects)
    log.info("%d tasks parsed, %d rejected", len(tasks), len(rejects))
    _finish(llm, "generate_tasks", endpoint=teacher)
    _raise_failures(pairs, "task generation")


def dedup_tasks(tasks_path, seeds_path, out_tasks, out_report, *, threshold, policy) -> None:
    kept, rep = dedup.dedup(read_jsonl(tasks_path), read_jsonl(seeds_path), threshold, policy)
    write_jsonl(out_tasks, kept)
    write_json(out_report, rep)
    log.info("dedup (%s, > %.2f): kept %d of %d", policy, threshold, rep["kept"], rep["candidates"])


def respond(tasks_path, out, *, responder, spec, settings, model_dir, sampling, run_seed) -> None:
    tasks = read_jsonl(tasks_path)
    llm, model = _llm(responder, spec, settings, model_dir)
    requests = [Request.chat(model, data.user_message(t["instruction"], t["input"]),
                             seed=selfinstruct.derived_seed(run_seed, "response", n), **sampling)
                for n, t in enumerate(tasks)]
    responses = llm.run(requests)
    write_jsonl(out, [{**t, "output": r.text, "finish_reason": r.finish_reason, **({"error": r.error} if r.error else {})}
                      for t, r in zip(tasks, responses)])
    _finish(llm, "respond", endpoint=responder)
    _raise_failures(list(zip(range(len(tasks)), responses)), "response")


def build_dataset(out, *, responses_path=None, url=None) -> None:
    if responses_path:
        records = data.to_alpaca(read_jsonl(responses_path))
    else:
        tmp = Path(str(out) + ".download")
        download(url, tmp)
        records = read_records(tmp)
        tmp.unlink()
        for n, r in enumerate(records):
            if not all(isinstance(r.get(k), str) for k in ("instruction", "output")):
                raise ValueError(f"{url}: record {n} is not Alpaca format (instruction, input, output)")
    write_json(out, records)
    log.info("%d training records", len(records))


def prepare_testset(out, *, path=None, url=None, limit=None) -> None:
    source = path or url
    if url:
        tmp = Path(str(out) + ".download")
        download(url, tmp)
        rows = read_records(tmp)
        tmp.unlink()
    else:
        rows = read_records(path)
    write_jsonl(out, data.normalize_testset(rows, source, limit))


def finetune(data_paths, caps, backbone_dir, out_dir, hp) -> None:
    from .train import finetune as train

    records = data.mix([(read_json(p), cap) for p, cap in zip(data_paths, caps)], seed=hp["seed"])
    summary = train(records, backbone_dir, out_dir, hp, log=log.info)
    log.info("trained on %d examples in %.1fs: loss %.3f -> %.3f", summary["examples"], summary["seconds"],
             summary["first_loss"], summary["last_loss"])


def generate_outputs(testset_path, out, *, generator, kind, spec=None, settings=None, model_dir=None,
                     max_new_tokens=512, import_url=None) -> None:
    """kind: 'alpaca' (a tuned or untuned HF model with the Alpaca prompt), 'chat' (an LLM
    through its chat interface) or 'import' (official outputs from import_url)."""
    testset = read_jsonl(testset_path)
    if kind == "import":
        tmp = Path(str(out) + ".download")
        download(import_url, tmp)
        rows = read_records(tmp)
        tmp.unlink()
        write_json(out, data.imported_outputs(rows, testset, generator, import_url))
        return
    llm, model = _llm(generator, spec, settings, model_dir)
    if kind == "alpaca":
        requests = [Request(model=model, prompt=data.alpaca_prompt(t["instruction"], t["input"]), max_tokens=max_new_tokens)
                    for t in testset]
    else:
        requests = [Request.chat(model, data.user_message(t["instruction"], t["input"]), max_tokens=max_new_tokens)
                    for t in testset]
    responses = llm.run(requests)
    write_json(out, [data.output_record(t, r.text.strip(), generator, finish_reason=r.finish_reason) for t, r in zip(testset, responses)])
    _finish(llm, "generate", generator=generator)
    _raise_failures(list(zip([t["id"] for t in testset], responses)), f"{generator} generation")


def judge_outputs(model_path, reference_path, out, *, judge_name, method, max_tokens, tie_margin, spec, settings, model_dir) -> None:
    llm, model = _llm(judge_name, spec, settings, model_dir)
    tagged = judge.build_requests(read_json(model_path), read_json(reference_path), judge_model=model,
                                  method=method, max_tokens=max_tokens)
    responses = llm.run([r for _, r in tagged])
    rows = judge.verdicts(list(zip([t for t, _ in tagged], responses)), method, tie_margin)
    write_jsonl(out, rows)
    log.info("%s", judge.win_rate(rows))
    _finish(llm, "judge", judge=judge_name)


def make_report(verdict_files: dict, csv_path, md_path, figure_path) -> None:
    """verdict_files: (judge, reference, testset, model) -> path."""
    rows = [dict(zip(("judge", "reference", "testset", "model"), key), **judge.win_rate(read_jsonl(path)))
            for key, path in verdict_files.items()]
    report.write_tables(rows, csv_path, md_path)
    report.plot_winrates(rows, figure_path)
