"""Training records in Alpaca format, and how an instruction is put to a chat model."""

from __future__ import annotations

from .seeds import NO_INPUT

METADATA = ("type", "topic", "view", "difficulty")


def user_message(instruction: str, input: str = "") -> str:
    """How an instruction is put to a chat model (API references, the responder): the input,
    if any, follows the instruction after a blank line, as AlpaCare did."""
    if input and input != NO_INPUT:
        return f"{instruction}\n\n{input}"
    return instruction


def to_alpaca(responses: list[dict]) -> list[dict]:
    """Training records {instruction, input, output} plus the task's metadata (type, topic,
    view, difficulty) where the task has it; empty outputs are left out."""
    return [
        {"instruction": r["instruction"], "input": "" if r["input"] == NO_INPUT else r["input"], "output": r["output"].strip(),
         **{k: r[k] for k in METADATA if k in r}}
        for r in responses
        if r.get("output", "").strip()
    ]
