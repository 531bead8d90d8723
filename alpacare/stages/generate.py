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


def new_token_limits(tokenizer, prompts: list[str], max_new_tokens: int | None, max_length: int | None) -> list[int]:
    """Per prompt, the tokens it may generate: max_new_tokens, and with max_length (prompt and
    output together, as the paper's "maximum length" and transformers' generate count them)
    no more than what is left after the prompt's own tokens, BOS included (max_new_tokens
    None: max_length alone, as AlpaCare's generation.py)."""
    from ..template import encode_prompt

    if max_length is None:
        if max_new_tokens is None:
            raise ValueError("generation needs max_new_tokens or max_length")
        return [max_new_tokens] * len(prompts)
    limits = []
    for n, prompt in enumerate(prompts):
        room = max_length - len(encode_prompt(tokenizer, prompt))
        if room < 1:
            raise ValueError(f"item {n}: its prompt alone takes {max_length - room} tokens, at least generation.max_length "
                             f"({max_length}); raise max_length or shorten the item")
        limits.append(room if max_new_tokens is None else min(max_new_tokens, room))
    return limits


def alpacare_response(prompt: str, continuation: str) -> str:
    """The response as AlpaCare's test_generation/generation.py kept it: the prompt and what the
    model wrote, split at "Response:", the second piece. A continuation that runs on into a new
    Alpaca block is kept up to that block's own "Response:" (and an instruction that itself
    contains "Response:" yields a piece of the prompt, as it did there); nothing is stripped."""
    return (prompt + continuation).split("Response:")[1]


def generate_outputs(testset_path, out, *, generator, kind, spec=None, settings=None, model_dir=None,
                     max_new_tokens=512, max_length=None, import_url=None, protocol="project") -> None:
    """kind: 'alpaca' (a tuned or untuned model in the Alpaca template, greedy, cut where it
    starts a new block), 'chat' (an LLM through its chat interface, greedy) or 'import'
    (official outputs from import_url). max_length caps prompt + output of 'alpaca' generation.
    protocol 'alpacare' ('alpaca' kind): AlpaCare's generation.py, no stop strings and the
    response after "Response:" (alpacare_response)."""
    if kind == "import":
        return import_outputs(testset_path, out, generator=generator, import_url=import_url)
    from .. import data, template
    from ..llm import Request
    from .common import finish, open_llm, raise_failures

    testset = read_jsonl(testset_path)
    llm, model = open_llm(generator, spec, settings, model_dir)
    if kind == "alpaca":
        prompts = [template.alpaca_prompt(t["instruction"], t["input"]) for t in testset]
        tokenizer = None
        if max_length is not None:
            from ..checkpoints import load_tokenizer

            tokenizer = load_tokenizer(model_dir)
        limits = new_token_limits(tokenizer, prompts, max_new_tokens, max_length)
        stops = () if protocol == "alpacare" else ALPACA_STOPS
        if protocol == "alpacare":
            log.info("AlpaCare's protocol: greedy to max_length %s (prompt and output), no stop strings, the response "
                     "after 'Response:' (generation.max_length and max_new_tokens do not apply)", max_length)
        requests = [Request(model=model, prompt=prompt, max_tokens=limit, temperature=0.0, stop=stops)
                    for prompt, limit in zip(prompts, limits)]
    else:
        requests = [Request.chat(model, data.user_message(t["instruction"], t["input"]), max_tokens=max_new_tokens,
                                 temperature=0.0) for t in testset]
    responses = llm.run(requests)
    if kind == "alpaca" and protocol == "alpacare":
        texts = [alpacare_response(prompt, r.text) for prompt, r in zip(prompts, responses)]
    else:
        texts = [outputs.cut_at_template_end(r.text) if kind == "alpaca" else r.text.strip() for r in responses]
    # an API names the snapshot that answered: kept with each output, so a reference says which model wrote it
    # and the protocol it followed, so a table can say so
    extra = {"protocol": protocol} if kind == "alpaca" else {}
    write_json(out, [outputs.output_record(t, text, generator, finish_reason=r.finish_reason, **extra,
                                           **({"model": r.model} if r.model else {}))
                     for t, text, r in zip(testset, texts, responses)])
    finish(llm, "generate", generator=generator)
    raise_failures(list(zip([t["id"] for t in testset], responses)), f"{generator} generation")
