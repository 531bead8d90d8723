"""What every LLM-calling stage shares: opening the LLM, its summary line, and the failure
policy (fail naming the items once failed calls exceed `llm.max_failed_fraction`)."""

from __future__ import annotations

import logging

from .. import snake
from ..llm import make_llm, model_id

log = logging.getLogger("alpacare")

# The LLM a stage opened last: raise_failures applies its configured failure policy, so the
# stages keep calling raise_failures(tagged, what) as they always did (one LLM per job).
_opened = None


def endpoint_name(name: str, config: dict) -> str | None:
    """The `llms` entry behind a name a stage was given: an llms name itself, or a generator
    or judge that names one."""
    llms = config.get("llms", {})
    if name in llms:
        return name
    for section in ("generators", "judges"):
        entry = config.get(section, {}).get(name)
        if isinstance(entry, dict) and entry.get("llm") in llms:
            return entry["llm"]
    return None


def open_llm(name, spec, settings, model_dir):
    """(llm, the model id its requests name). Rule params carry only the spec's identity
    (provider, model, base_url); inside a job the endpoint's other settings (price, rpm/tpm,
    timeouts, api_key_env, keyless, max_concurrency) come from the run's config. The rule
    running now goes into every ledger line and error message."""
    global _opened
    config = snake.current_config()
    endpoint = endpoint_name(name, config)
    if endpoint is not None:
        spec = {**config["llms"][endpoint], **spec}
        name = endpoint
    llm = make_llm(name, spec, settings or {}, model_dir=model_dir, rule=snake.current_rule())
    llm.on_answered = snake.record_replies  # the replay bundle carries every reply the outputs used
    _opened = llm
    return llm, model_id(spec, model_dir)


def finish(llm, stage: str, **context) -> None:
    """The job's summary line (each call is already in the ledger file, as it happened)."""
    extra = "".join(f" {k}={v}" for k, v in context.items())
    log.info("%s%s: %s", stage, extra, llm.ledger.summary())


def raise_failures(tagged_responses, what: str, max_failed_fraction: float | None = None, llm=None) -> None:
    """After everything else is written and cached, fail loudly naming the failed items,
    unless they are at most `max_failed_fraction` of all. Without an explicit fraction, the
    configured `llm.max_failed_fraction` of `llm` (default: the LLM opened last) applies;
    default 0: any failure fails the job."""
    llm = llm or _opened
    if max_failed_fraction is None:
        max_failed_fraction = llm.max_failed_fraction if llm is not None else 0.0
    failed = [(tag, r.error) for tag, r in tagged_responses if not r.ok]
    if failed and len(failed) > max_failed_fraction * len(tagged_responses):
        rule = f"rule {llm.rule}: " if llm is not None and llm.rule else ""
        shown = "; ".join(f"item {tag}: {err}" for tag, err in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise RuntimeError(f"{rule}{len(failed)} {what} call(s) failed of {len(tagged_responses)}, more than "
                           f"llm.max_failed_fraction {max_failed_fraction:g} allows (completed calls are cached; "
                           f"rerun to resume): {shown}{more}")
    if failed:
        log.warning("%d of %d %s call(s) failed, within llm.max_failed_fraction %g: %s", len(failed),
                    len(tagged_responses), what, max_failed_fraction,
                    "; ".join(f"item {tag}: {err}" for tag, err in failed[:5]))
