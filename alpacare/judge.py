"""Pairwise judging (AlpaCare / alpaca_eval style): the judge sees the instruction and two
outputs and names the better one; each pair is judged in both orders, scoring the model
win 1, tie 0.5, loss 0, and an item's score is the mean of its two orders."""

from __future__ import annotations

import math
import re

from .data import user_message
from .llm import Request

JUDGE_PROMPT = """Pick the output, (a) or (b), that better carries out the instruction below for a medical user: more correct, more helpful, safer. If they are equally good, say Tie. Answer with exactly one of: Output (a), Output (b), Tie.

## Instruction:
{instruction}

## Output (a):
{output_a}

## Output (b):
{output_b}

## Which is better, Output (a), Output (b), or is it a Tie?"""

CHOICES = ("Output (a)", "Output (b)")
ORDERS = ("reference_first", "model_first")

_A = re.compile(r"output\s*\(?a\)?", re.IGNORECASE)
_B = re.compile(r"output\s*\(?b\)?", re.IGNORECASE)
_TIE = re.compile(r"\btie\b", re.IGNORECASE)


def parse_reply(reply: str) -> str | None:
    """'a', 'b', 'tie' or None when the reply names neither or both."""
    found = {name for name, rx in (("a", _A), ("b", _B), ("tie", _TIE)) if rx.search(reply)}
    return found.pop() if len(found) == 1 else None


def preference_from_logprobs(logprobs: list[float], tie_margin: float) -> str:
    diff = logprobs[0] - logprobs[1]
    if abs(diff) <= tie_margin:
        return "tie"
    return "a" if diff > 0 else "b"


def model_score(preference: str | None, order: str) -> float | None:
    if preference is None:
        return None
    if preference == "tie":
        return 0.5
    model_slot = "b" if order == "reference_first" else "a"
    return 1.0 if preference == model_slot else 0.0


def build_requests(model_outputs: list[dict], reference_outputs: list[dict], *, judge_model: str, method: str, max_tokens: int):
    reference = {r["id"]: r for r in reference_outputs}
    tagged = []
    for item in model_outputs:
        ref = reference.get(item["id"])
        if ref is None:
            raise ValueError(f"reference outputs have no item with id {item['id']!r}")
        instruction = user_message(item["instruction"], item.get("input", ""))
        for order in ORDERS:
            a, b = (ref["output"], item["output"]) if order == "reference_first" else (item["output"], ref["output"])
            prompt = JUDGE_PROMPT.format(instruction=instruction, output_a=a, output_b=b)
            if method == "logprob":
                request = Request.chat(judge_model, prompt, choices=CHOICES)
            else:
                request = Request.chat(judge_model, prompt, temperature=0.0, max_tokens=max_tokens)
            tagged.append(((item["id"], order), request))
    return tagged


def verdicts(tagged_responses, method: str, tie_margin: float) -> list[dict]:
    rows = []
    for (item_id, order), response in tagged_responses:
        if not response.ok:
            preference = None
        elif method == "logprob":
            preference = preference_from_logprobs(response.choice_logprobs, tie_margin)
        else:
            preference = parse_reply(response.text)
        row = {"id": item_id, "order": order, "reply": response.text, "preference": preference,
               "model_score": model_score(preference, order)}
        if response.choice_logprobs is not None:
            row["logprobs"] = [round(x, 4) for x in response.choice_logprobs]
        if response.error:
            row["error"] = response.error
        rows.append(row)
    if method == "logprob":
        _cancel_position_bias(rows, tie_margin)
    return rows


def _cancel_position_bias(rows: list[dict], tie_margin: float) -> None:
    """A small judge prefers one position whatever the content (SmolLM2-135M: about 1.5 nats
    towards (a)), so each order alone says nothing. The model's log-probability margin over
    the reference, averaged over the two orders, cancels a constant position bias; both
    rows of the item then carry the verdict that margin gives."""
    by_item: dict = {}
    for row in rows:
        by_item.setdefault(row["id"], {})[row["order"]] = row
    for pair in by_item.values():
        if set(pair) != set(ORDERS) or any("logprobs" not in r for r in pair.values()):
            continue
        a_first, m_first = pair["reference_first"]["logprobs"], pair["model_first"]["logprobs"]
        margin = ((a_first[1] - a_first[0]) + (m_first[0] - m_first[1])) / 2
        for order, row in pair.items():
            model_slot, reference_slot = ("b", "a") if order == "reference_first" else ("a", "b")
            row["model_margin"] = round(margin, 4)
            row["preference"] = "tie" if abs(margin) <= tie_margin else (model_slot if margin > 0 else reference_slot)
            row["model_score"] = model_score(row["preference"], order)


def win_rate(rows: list[dict]) -> dict:
    """Percent of items won (ties half); an item counts only if both orders parsed, as in
    AlpaCare's evaluation. Unparseable replies are counted, never silently dropped."""
    by_item: dict = {}
    for row in rows:
        by_item.setdefault(row["id"], {})[row["order"]] = row["model_score"]
    scores = []
    for orders in by_item.values():
        values = [orders.get(o) for o in ORDERS]
        scores.append(math.nan if None in values else sum(values) / 2)
    valid = [s for s in scores if not math.isnan(s)]
    return {
        "win_rate": round(100 * sum(valid) / len(valid), 2) if valid else math.nan,
        "items": len(scores),
        "scored_items": len(valid),
        "unparseable_replies": sum(r["model_score"] is None for r in rows),
        "order_agreement": round(sum(1 for o in by_item.values() if len(set(o.values())) == 1) / len(by_item), 3) if by_item else math.nan,
    }
