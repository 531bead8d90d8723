"""What every LLM-calling stage shares: opening the LLM, the ledger line, failing on failed calls."""

from __future__ import annotations

import logging

from ..llm import make_llm, model_id

log = logging.getLogger("alpacare")
LEDGER = "results/ledger.jsonl"


def open_llm(name, spec, settings, model_dir):
    llm = make_llm(name, spec, settings, model_dir=model_dir)
    return llm, model_id(spec, model_dir)


def finish(llm, stage: str, **context) -> None:
    summary = llm.ledger.summary()
    log.info("%s: %s", stage, summary)
    llm.ledger.append_to(LEDGER, stage=stage, **context)


def raise_failures(tagged_responses, what: str, max_failed_fraction: float = 0.0) -> None:
    """After everything else is written and cached, fail loudly naming the failed items,
    unless they are at most `max_failed_fraction` of all (default 0: any failure fails)."""
    failed = [(tag, r.error) for tag, r in tagged_responses if not r.ok]
    if failed and len(failed) > max_failed_fraction * len(tagged_responses):
        shown = "; ".join(f"{tag}: {err}" for tag, err in failed[:5])
        raise RuntimeError(f"{len(failed)} {what} call(s) failed (completed calls are cached; rerun to resume): {shown}")
