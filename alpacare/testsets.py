"""Test sets: rows from AlpaCare's and our own files, normalized to {id, instruction, input, difficulty?}."""

from __future__ import annotations


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
