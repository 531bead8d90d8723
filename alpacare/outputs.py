"""Model outputs in alpaca_eval's format, generated or imported from official files."""

from __future__ import annotations

import re

# A model that goes on past its answer starts the next Alpaca block; the answer ends there.
_NEXT_BLOCK = re.compile(r"(?:^|\n)[ \t]*#{2,}[ \t]*(?:Instruction|Input|Response)[ \t]*:", re.IGNORECASE)
# Anthropic's legacy completion format, in which AlpaCare's claude-2 iCliniq file keeps its prompt.
_HUMAN_TURN = re.compile(r"^\s*Human:\s*(.*?)\s*(?:\n\s*Assistant:\s*)?$", re.DOTALL)


def cut_at_template_end(text: str) -> str:
    """The answer up to where the model begins a new `### Instruction:`-style block."""
    found = _NEXT_BLOCK.search(text)
    return (text[: found.start()] if found else text).strip()


def imported_outputs(rows: list[dict], testset: list[dict], generator: str, source: str) -> list[dict]:
    """Official outputs (AlpaCare's JSON or JSONL with `output` or `response`, alpaca_eval's
    JSON) paired with the test items on each item's `match` text (the instruction, or for
    iCliniq the patient's question). Every item needs an output: a missing one is an error
    naming the items. A row with both holds the model's answer in `response`: AlpaCare's
    generation script writes it there, and its AlpacaFarm files for ChatDoctor and
    medAlpaca-7B keep the input file's `output` (text-davinci-003's answer) beside it."""
    on = "input" if any(item.get("match", item["instruction"]) != item["instruction"] for item in testset) else "instruction"
    instructions = sorted({item["instruction"] for item in testset}, key=len, reverse=True)
    by_key: dict[str, str] = {}
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{source}: row {n}: not an object")
        text = row.get("response", row.get("output"))
        if not isinstance(text, str):
            continue
        key = _row_key(row, on, instructions)
        if key:
            by_key.setdefault(key, text)
    out, missing = [], []
    for item in testset:
        key = item.get("match", item["instruction"]).strip()
        if key in by_key:
            out.append(output_record(item, by_key[key], generator))
        else:
            missing.append(item["id"])
    if missing:
        raise ValueError(f"{source}: no output for {len(missing)} test item(s) (matched on {on}), ids {missing[:10]}")
    return out


def _row_key(row: dict, on: str, instructions: list[str]) -> str:
    instruction = (row.get("instruction") or "").strip()
    given = (row.get("input") or "").strip()
    prompt = _HUMAN_TURN.match(row["prompt"]) if isinstance(row.get("prompt"), str) else None
    if on == "instruction":
        return instruction or (prompt.group(1).strip() if prompt else "")
    if given:
        return given
    if prompt:  # "Human: <instruction>\n\n<question>\nAssistant:"
        body = prompt.group(1).strip()
        for known in instructions:
            if body.startswith(known):
                return body[len(known):].strip()
        return body
    return instruction  # a file that holds the question as its instruction


def output_record(item: dict, output: str, generator: str, **extra) -> dict:
    """One model output, in alpaca_eval's format plus the test item's id."""
    return {"id": item["id"], "instruction": item["instruction"], "input": item.get("input", ""),
            "output": output, "generator": generator, **extra}
