"""Stage: one generator's outputs on one test set."""

from __future__ import annotations

from pathlib import Path

from .. import data, outputs, template
from ..io import download, read_jsonl, read_records, write_json
from ..llm import Request
from .common import finish, open_llm, raise_failures


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
        write_json(out, outputs.imported_outputs(rows, testset, generator, import_url))
        return
    llm, model = open_llm(generator, spec, settings, model_dir)
    if kind == "alpaca":
        requests = [Request(model=model, prompt=template.alpaca_prompt(t["instruction"], t["input"]), max_tokens=max_new_tokens)
                    for t in testset]
    else:
        requests = [Request.chat(model, data.user_message(t["instruction"], t["input"]), max_tokens=max_new_tokens)
                    for t in testset]
    responses = llm.run(requests)
    write_json(out, [outputs.output_record(t, r.text.strip(), generator, finish_reason=r.finish_reason) for t, r in zip(testset, responses)])
    finish(llm, "generate", generator=generator)
    raise_failures(list(zip([t["id"] for t in testset], responses)), f"{generator} generation")
