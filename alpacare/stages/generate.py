"""Stage: one generator's outputs on one test set."""

from __future__ import annotations

import logging
from pathlib import Path

from .. import outputs
from ..io import read_jsonl, read_records, write_json
from ..published import fetch, url_of

log = logging.getLogger("alpacare")

# Where a model working in the Alpaca template starts a block of its own: generation stops there.
# Only a line that opens a block as the template writes it, colon included: an answer with its
# own heading ("### Response to treatment") goes on.
ALPACA_STOPS = ("\n### Instruction:", "\n### Input:", "\n### Response:")


def import_outputs(testset_path, out, *, generator, import_url) -> None:
    """Official outputs from a published file (checked against its pin) or a URL (file:// for
    local files), paired with the test items."""
    testset = read_jsonl(testset_path)
    tmp = Path(str(out) + ".download")
    fetch(import_url, tmp)
    try:
        rows = read_records(tmp)
    finally:
        tmp.unlink()
    write_json(out, outputs.imported_outputs(rows, testset, generator, url_of(import_url)))
    log.info("%d outputs imported from %s", len(testset), url_of(import_url))


def generate_outputs(testset_path, out, *, generator, kind, spec=None, settings=None, model_dir=None,
                     max_new_tokens=512, import_url=None) -> None:
    """kind: 'alpaca' (a tuned or untuned model in the Alpaca template, greedy, cut where it
    starts a new block), 'chat' (an LLM through its chat interface, greedy) or 'import'
    (official outputs from import_url)."""
    if kind == "import":
        return import_outputs(testset_path, out, generator=generator, import_url=import_url)
    from .. import data, template
    from ..llm import Request
    from .common import finish, open_llm, raise_failures

    testset = read_jsonl(testset_path)
    llm, model = open_llm(generator, spec, settings, model_dir)
    if kind == "alpaca":
        requests = [Request(model=model, prompt=template.alpaca_prompt(t["instruction"], t["input"]),
                            max_tokens=max_new_tokens, temperature=0.0, stop=ALPACA_STOPS) for t in testset]
    else:
        requests = [Request.chat(model, data.user_message(t["instruction"], t["input"]), max_tokens=max_new_tokens,
                                 temperature=0.0) for t in testset]
    responses = llm.run(requests)
    texts = [outputs.cut_at_template_end(r.text) if kind == "alpaca" else r.text.strip() for r in responses]
    # an API names the snapshot that answered: kept with each output, so a reference says which model wrote it
    write_json(out, [outputs.output_record(t, text, generator, finish_reason=r.finish_reason, **({"model": r.model} if r.model else {}))
                     for t, text, r in zip(testset, texts, responses)])
    finish(llm, "generate", generator=generator)
    raise_failures(list(zip([t["id"] for t in testset], responses)), f"{generator} generation")
