"""Stage: one judge's verdicts on one model against one reference."""

from __future__ import annotations

import logging

from .. import judge
from ..io import read_json, write_jsonl
from .common import finish, open_llm, raise_failures

log = logging.getLogger("alpacare")


def judge_outputs(model_path, reference_path, out, *, judge_name, method, max_tokens, tie_margin, spec, settings, model_dir) -> None:
    llm, model = open_llm(judge_name, spec, settings, model_dir)
    tagged = judge.build_requests(read_json(model_path), read_json(reference_path), judge_model=model,
                                  method=method, max_tokens=max_tokens)
    responses = llm.run([r for _, r in tagged])
    rows = judge.verdicts(list(zip([t for t, _ in tagged], responses)), method, tie_margin)
    write_jsonl(out, rows)
    log.info("%s", judge.win_rate(rows))
    finish(llm, "judge", judge=judge_name)
    raise_failures(list(zip([t for t, _ in tagged], responses)), f"{judge_name} judge")
