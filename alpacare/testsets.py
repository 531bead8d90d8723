"""Test sets: rows from AlpaCare's, alpaca_eval's and our own files, normalized to
{id, instruction, input, match, difficulty?}.

`match` is the text that outputs imported from official files are paired with this item on
(alpacare.outputs): the instruction by default, the question for iCliniq, whose official
files leave `instruction` empty and hold the patient's question in `input`."""

from __future__ import annotations

# AlpaCare asked every model this, with the patient's question as the input (iCliniq).
DOCTOR_INSTRUCTION = "If you are a doctor, please answer the medical questions based on the patient's description."

MATCH_ON = ("instruction", "input")


def normalize_testset(rows: list[dict], source: str, limit: int | None = None, *, fields: dict | None = None,
                      instruction: str | None = None, match: str = "instruction") -> list[dict]:
    """Test-set rows as {id, instruction, input, match, difficulty?}.

    fields: our field (id, instruction, input, difficulty) -> the column holding it in the
      file; unmapped fields are looked up under their own name ('question' also serves as
      the instruction). With no mapping this reads the project's format, MedInstruct-test
      (id, instruction, difficulty, reference answers as columns) and alpaca_eval's.
    instruction: one instruction for every item (iCliniq: DOCTOR_INSTRUCTION); the row's own
      text then becomes the input.
    match: which field imported outputs are paired on ('instruction' or 'input').
    """
    if match not in MATCH_ON:
        raise ValueError(f"{source}: match must be one of {', '.join(MATCH_ON)}, got {match!r}")
    fields = dict(fields or {})
    unknown = set(fields) - {"id", "instruction", "input", "difficulty"}
    if unknown:
        raise ValueError(f"{source}: unknown field(s) in the mapping: {', '.join(sorted(unknown))}")
    out, seen = [], {}
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{source}: row {n}: not an object")
        where = f"{source}: row {n}"
        text = _column(row, fields, "input", where) or ""
        if instruction is not None:
            item_instruction = instruction
        elif "instruction" in fields:
            item_instruction = _column(row, fields, "instruction", where)
        else:
            item_instruction = row.get("instruction") or row.get("question")
            if not item_instruction and text:  # a question-only file: the question is the instruction
                item_instruction, text = text, ""
        if not isinstance(item_instruction, str) or not item_instruction.strip():
            raise ValueError(f"{where}: no instruction (field {fields.get('instruction', 'instruction')!r} is empty or missing)")
        if not isinstance(text, str):
            raise ValueError(f"{where}: field {fields.get('input', 'input')!r} is not text")
        item_id = _column(row, fields, "id", where) if "id" in fields or "id" in row else n
        item = {"id": item_id, "instruction": item_instruction.strip(), "input": text.strip()}
        item["match"] = item[match]
        if not item["match"]:
            raise ValueError(f"{where}: items are matched on {match!r}, which is empty")
        difficulty = _column(row, fields, "difficulty", where)
        if difficulty is not None:
            try:
                item["difficulty"] = int(difficulty)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: difficulty must be a whole number, got {difficulty!r}") from None
        key = repr(item["id"])
        if key in seen:
            raise ValueError(f"{where}: id {item['id']!r} repeats row {seen[key]}")
        seen[key] = n
        out.append(item)
    return out[:limit] if limit else out


def _column(row: dict, fields: dict, name: str, where: str):
    column = fields.get(name, name)
    if name in fields and column not in row:
        raise ValueError(f"{where}: no column {column!r} (mapped to {name!r}); the row has {', '.join(sorted(row))}")
    return row.get(column)
