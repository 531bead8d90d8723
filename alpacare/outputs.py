"""Model outputs in alpaca_eval's format, generated or imported from official files."""

from __future__ import annotations


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
