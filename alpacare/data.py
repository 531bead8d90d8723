"""Artifact formats: Alpaca training sets, test sets, and model outputs (alpaca_eval format)."""

from __future__ import annotations

import random

from .seeds import NO_INPUT

PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def alpaca_prompt(instruction: str, input: str = "") -> str:
    """The Stanford Alpaca prompt, used for training and for generating with tuned models."""
    if input and input != NO_INPUT:
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def user_message(instruction: str, input: str = "") -> str:
    """How an instruction is put to a chat model (API references, the responder)."""
    if input and input != NO_INPUT:
        return f"{instruction}\n\n{input}"
    return instruction


def to_alpaca(responses: list[dict]) -> list[dict]:
    """Training records {instruction, input, output}; empty outputs are left out."""
    return [
        {"instruction": r["instruction"], "input": "" if r["input"] == NO_INPUT else r["input"], "output": r["output"].strip()}
        for r in responses
        if r.get("output", "").strip()
    ]


def mix(datasets: list[tuple[list[dict], int | None]], seed: int) -> list[dict]:
    """Concatenate training sets, each capped at `max` records sampled with a fixed seed."""
    records = []
    for n, (rows, cap) in enumerate(datasets):
        if cap is not None and cap < len(rows):
            rows = random.Random(seed + n).sample(rows, cap)
        records.extend(rows)
    return records


def normalize_testset(rows: list[dict], source: str, limit: int | None = None) -> list[dict]:
    """Test-set rows as {id, instruction, input, difficulty?}. Accepts the project's own
    format, MedInstruct-test (id, instruction, difficulty, reference answers as columns),
    iCliniq ({input: question, ...}) and alpaca_eval ({instruction, dataset, ...})."""
    out = []
    for n, row in enumerate(rows):
        instruction = row.get("instruction") or row.get("question") or row.get("input")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"{source}: row {n}: no instruction")
        item = {
            "id": row.get("id", n),
            "instruction": instruction.strip(),
            "input": (row.get("input", "") if row.get("instruction") else "") or "",
        }
        if "difficulty" in row:
            item["difficulty"] = int(row["difficulty"])
        out.append(item)
    return out[:limit] if limit else out


def imported_outputs(rows: list[dict], testset: list[dict], generator: str, source: str) -> list[dict]:
    """Official outputs (AlpaCare's jsonl/json, alpaca_eval json) matched to the test set by
    instruction text; an instruction with no output is an error naming it."""
    by_instruction = {}
    for row in rows:
        text = row.get("output", row.get("response"))
        if isinstance(row.get("instruction"), str) and isinstance(text, str):
            by_instruction.setdefault(row["instruction"].strip(), text)
    out, missing = [], []
    for item in testset:
        if item["instruction"] in by_instruction:
            out.append(output_record(item, by_instruction[item["instruction"]], generator))
        else:
            missing.append(item["id"])
    if missing:
        raise ValueError(f"{source}: no output for {len(missing)} test item(s), ids {missing[:10]}")
    return out


def output_record(item: dict, output: str, generator: str, **extra) -> dict:
    """One model output, in alpaca_eval's format plus the test item's id."""
    return {"id": item["id"], "instruction": item["instruction"], "input": item.get("input", ""),
            "output": output, "generator": generator, **extra}
