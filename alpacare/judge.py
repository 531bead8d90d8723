"""Pairwise judging (the AlpaCare paper's protocol, after alpaca_eval): the judge sees the
instruction and two outputs and names the better one, or a tie. Every pair is asked in both
orders; a verdict scores the model 1 (win), 0.5 (tie) or 0 (loss). This module builds the
requests and reads the replies into verdict rows; the arithmetic over verdicts (win rates,
intervals, position bias) lives in alpacare.winrates, so a report-only edit reruns no judge.

Verdict rows (results/verdicts/.../{model}.jsonl): one per (item, order) with `reply` (the last
reply), `replies` (every attempt, when re-asked), `preference` ('a', 'b', 'tie' or null),
`model_score` (1, 0.5, 0 or null), `invalid` (no verdict after the re-asks, or a failed call), `scoring` (how the reply was read:
`project`, parse_reply, or `alpacare`, AlpaCare's exact rule, official_preference),
`judge_model` (the model the API named in its reply: the snapshot that judged; null for local
judges), `cache_keys` (the cache entry of each attempt, so a replay bundle can carry exactly the
replies a table used), and for log-prob judges `logprobs`, `model_margin` (averaged over both
orders, which decides `preference`) and `order_preference` / `order_model_score` (what this
order's log-probabilities alone say: the position bias, measured)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .data import user_message
from .llm import Request

CHOICES = ("Output (a)", "Output (b)")
ORDERS = ("reference_first", "model_first")
PROMPTS = Path(__file__).resolve().parent.parent / "prompts" / "judge"
DEFAULT_PROMPT = "pairwise"

# A verdict is a whole phrase: "Output (a)", "output a", "Output(b)", "Output: (b)", or the word "tie".
# (After a colon only the parenthesised letter counts: "Output: a list of ..." is prose.)
_VERDICT = re.compile(r"\boutput\s*(?:\(\s*([ab])\s*\)|([ab])\b|:\s*\(\s*([ab])\s*\))|\b(tie)\b", re.IGNORECASE)
# Two outputs named together ("Output (a) and Output (b) are both ...") is a comparison, not a verdict.
_SEPARATORS = r"(?:\s*(?:,|\band\b|\bor\b|&|\bvs\b\.?|\bversus\b|\bnor\b))+\s*"
_JOINED = re.compile(r"^" + _SEPARATORS + r"(?:output\s*:?\s*\(?\s*[ab]\b|tie\b)", re.IGNORECASE)
_JOINED_BEFORE = re.compile(r"output\s*:?\s*\(?\s*[ab]\s*\)?" + _SEPARATORS + r"$", re.IGNORECASE)
# "It is not a tie", "there's no tie", "isn't a tie": the word tie denied is no verdict.
_DENIED = re.compile(r"(?:\b(?:not|no|never)|n't)\s+(?:(?:a|an|any)\s+)?$", re.IGNORECASE)
_BARE = re.compile(r"^\s*\(?([ab])\)?\s*\.?\s*$", re.IGNORECASE)
_QUOTE_CONTEXT = 24  # characters either side of a verdict phrase checked against the candidates' text


# AlpaCare's own judge prompts (alpaca_eval's pairwise prompt, `prompt: alpacare-official`), one per API
# family, downloaded by pinned commit; gpt_eval.py holds the system prompt it sent with the OpenAI one
OFFICIAL = "alpacare-official"
OFFICIAL_PROMPTS = {
    "openai": {"user": "alpacare:prompt/alpaca_eval_chat_gpt.txt", "system": "alpacare:evaluation/gpt_eval.py"},
    "anthropic": {"user": "alpacare:prompt/alpaca_eval_anthropic.txt"},
}
# the Anthropic file is a legacy completion prompt: "Human: <prompt>\n\nAssistant:"
_LEGACY_TURNS = re.compile(r"\s*Human:\s?(?P<human>.*?)\s*Assistant:\s*", re.DOTALL)


def official_refs(provider: str) -> dict[str, str]:
    """The published files of the official prompt for a judge's provider (local and
    OpenAI-compatible judges take the OpenAI one: a chat model)."""
    return OFFICIAL_PROMPTS["anthropic" if provider == "anthropic" else "openai"]


def official_prompt(provider: str) -> dict:
    """{system, user, reask} from AlpaCare's files as evaluation/gpt_eval.py and anthropic_eval.py
    fill them: the file's text plus a newline, {output_1}/{output_2} the outputs shown as (a)
    and (b). The Anthropic file's Human turn is the user message of today's Messages API, which
    begins the Assistant turn itself. AlpaCare re-asked nothing; with `reasks` above 0 the
    project's reminder (prompts/judge/pairwise.yaml) is the follow-up."""
    from .published import fetch_bytes, script_string

    refs = official_refs(provider)
    text = fetch_bytes(refs["user"]).decode("utf-8") + "\n"
    if provider == "anthropic":
        turns = _LEGACY_TURNS.fullmatch(text)
        if not turns:
            raise ValueError(f"{refs['user']}: not a 'Human: ... Assistant:' prompt")
        text = turns["human"]
    user = text.replace("{output_1}", "{output_a}").replace("{output_2}", "{output_b}")
    missing = [p for p in ("{instruction}", "{output_a}", "{output_b}") if p not in user]
    if missing:
        raise ValueError(f"{refs['user']}: lacks the placeholder(s) {', '.join(missing)}")
    system = script_string(refs["system"], "system_prompt", fetch_bytes(refs["system"])) if "system" in refs else None
    return {"system": system, "user": user, "reask": load_prompt(prompt_path(DEFAULT_PROMPT))["reask"]}


def resolve_prompt(prompt: str | Path, provider: str) -> dict:
    """A judge's prompt: AlpaCare's own (alpacare-official) or a YAML file (a name or a path)."""
    return official_prompt(provider) if str(prompt) == OFFICIAL else load_prompt(prompt_path(str(prompt)))


def prompt_path(name: str) -> Path:
    """A judge prompt by name (a file under prompts/judge/) or as a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    return PROMPTS / f"{name}.yaml"


def load_prompt(path: str | Path) -> dict:
    """{system, user, reask}: `user` holds {instruction}, {output_a} and {output_b}."""
    path = Path(path)
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROMPTS.glob("*.yaml")))
        raise ValueError(f"judge prompt {str(path)!r} not found (prompts in {PROMPTS}: {known})")
    prompt = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key in ("user", "reask"):
        if not isinstance(prompt.get(key), str) or not prompt[key].strip():
            raise ValueError(f"{path}: needs a text field {key!r}")
    missing = [p for p in ("{instruction}", "{output_a}", "{output_b}") if p not in prompt["user"]]
    if missing:
        raise ValueError(f"{path}: field 'user' lacks the placeholder(s) {', '.join(missing)}")
    unknown = set(prompt) - {"system", "user", "reask"}
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {', '.join(sorted(unknown))} (known: system, user, reask)")
    return prompt


def _fill(template: str, values: dict) -> str:
    """Replace the {name} placeholders in one pass, so braces inside an output are kept as they are."""
    return re.sub(r"\{(instruction|output_a|output_b)\}", lambda m: values[m.group(1)], template)


def parse_reply(reply: str, candidates: tuple[str, ...] = ()) -> str | None:
    """'a', 'b', 'tie' or None: the first verdict the reply states. A verdict phrase counts
    only as a whole phrase (so 'Tie.' and 'Output (b)\\n\\nThe output...' parse, 'untied' does
    not), not when two outputs are named together ('Output (a) and Output (b) are ...'), not
    a tie denied ('It is not a tie: Output (a) is better.' is (a)), and not when it sits inside
    text copied from a candidate output: a candidate that writes "Output (b) is better" cannot
    steer a judge that quotes it. A bare "(a)" or "b" counts."""
    bare = _BARE.match(reply)
    if bare:
        return bare.group(1).lower()
    for found in _VERDICT.finditer(reply):
        if _JOINED.match(reply[found.end():]) or _JOINED_BEFORE.search(reply[: found.start()]):
            continue
        if found.group(4) and _DENIED.search(reply[: found.start()]):
            continue
        if candidates and _quoted(reply, found.start(), found.end(), candidates):
            continue
        letter = found.group(1) or found.group(2) or found.group(3)
        return letter.lower() if letter else "tie"
    return None


# AlpaCare's evaluation/evaulation.py replaces "Output (a)"/"Output (b)" with the two generators' names and
# strips every character that is not an ASCII letter or digit; these stand in for the names (letters only,
# no "Tie" in them), so a reply counts exactly when AlpaCare's would
_SLOT_NAMES = {"a": "ZQslotAQZ", "b": "ZQslotBQZ"}
SCORINGS = ("project", "alpacare")


def official_preference(reply: str) -> str | None:
    """'a', 'b', 'tie' or None as AlpaCare's scorer (evaluation/evaulation.py) reads a reply:
    after "Output (a)"/"Output (b)" are replaced by names and everything but ASCII letters and
    digits is removed, the reply must be exactly one name ("Output (b)." and "**Output (a)**"
    count, "Output (a) is better" and "output (a)" do not); otherwise a reply that contains
    "Tie" (case-sensitive, anywhere) is a tie; anything else is no verdict (dropped, never
    re-asked)."""
    text = reply.strip().replace("Output (a)", _SLOT_NAMES["a"]).replace("Output (b)", _SLOT_NAMES["b"])
    text = re.sub(r"[^a-zA-Z0-9]", "", text)
    for letter, name in _SLOT_NAMES.items():
        if text == name:
            return letter
    return "tie" if "Tie" in text else None


def read_reply(reply: str, candidates: tuple[str, ...] = (), scoring: str = "project") -> str | None:
    """A reply's verdict under a scoring rule: the project's (parse_reply) or AlpaCare's (official_preference)."""
    if scoring == "alpacare":
        return official_preference(reply)
    if scoring != "project":
        raise ValueError(f"unknown scoring {scoring!r} (known: {', '.join(SCORINGS)})")
    return parse_reply(reply, candidates)


def _quoted(reply: str, start: int, end: int, candidates: tuple[str, ...]) -> bool:
    """Whether the verdict phrase and some text around it appear verbatim in a candidate
    (a bare 'Output (a)' is the judge's own words, even if a candidate also says it)."""
    before = reply[max(0, start - _QUOTE_CONTEXT):start]
    after = reply[end:end + _QUOTE_CONTEXT]
    phrase = reply[start:end]
    for context in (before + phrase, phrase + after):
        if len(context.strip()) > len(phrase) + 3 and any(context in c for c in candidates):
            return True
    return False


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


def pair_candidates(model_outputs: list[dict], reference_outputs: list[dict]):
    """(item id, order, instruction, output a, output b) for both orders of every item."""
    reference = {r["id"]: r for r in reference_outputs}
    missing = [item["id"] for item in model_outputs if item["id"] not in reference]
    if missing:
        raise ValueError(f"reference outputs have no item with id(s) {missing[:10]}")
    for item in model_outputs:
        ref = reference[item["id"]]
        instruction = user_message(item["instruction"], item.get("input", ""))
        for order in ORDERS:
            a, b = (ref["output"], item["output"]) if order == "reference_first" else (item["output"], ref["output"])
            yield item["id"], order, instruction, a, b


def build_requests(model_outputs: list[dict], reference_outputs: list[dict], *, judge_model: str, method: str,
                   max_tokens: int, prompt: dict | None = None):
    """[((item id, order), Request)]: the paper's protocol at temperature 0; a log-prob judge
    scores the two answers instead of generating."""
    prompt = prompt or load_prompt(prompt_path(DEFAULT_PROMPT))
    tagged = []
    for item_id, order, instruction, a, b in pair_candidates(model_outputs, reference_outputs):
        user = _fill(prompt["user"], {"instruction": instruction, "output_a": a, "output_b": b})
        params = {"choices": CHOICES} if method == "logprob" else {"temperature": 0.0, "max_tokens": max_tokens}
        tagged.append(((item_id, order), Request.chat(judge_model, user, system=prompt.get("system"), **params)))
    return tagged


def reask(request: Request, reply: str, prompt: dict) -> Request:
    """The same request with the unparseable reply and a reminder appended: the attempt is part
    of what is asked, so it has its own cache entry (and a deterministic judge a new prompt)."""
    return Request(**{**request.__dict__, "messages": request.messages + (("assistant", reply), ("user", prompt["reask"].strip()))})


def verdicts(tagged_attempts, method: str, tie_margin: float, candidates: dict | None = None,
             keys: dict | None = None, scoring: str = "project") -> list[dict]:
    """Verdict rows from [((item id, order), [response of each attempt])]; a bare Response is
    one attempt. candidates: (item id, order) -> (output a, output b), for parse_reply;
    keys: (item id, order) -> the cache key of each attempt, kept in the row; scoring: how a
    reply is read (read_reply)."""
    rows = []
    for (item_id, order), attempts in tagged_attempts:
        attempts = attempts if isinstance(attempts, list) else [attempts]
        response = attempts[-1]
        if not response.ok:
            preference = None
        elif method == "logprob":
            preference = preference_from_logprobs(response.choice_logprobs, tie_margin)
        else:
            preference = read_reply(response.text, (candidates or {}).get((item_id, order), ()), scoring)
        row = {"id": item_id, "order": order, "reply": response.text, "preference": preference,
               "model_score": model_score(preference, order), "invalid": preference is None,
               "judge_model": response.model}
        if method == "reply":
            row["scoring"] = scoring
        if len(attempts) > 1:
            row["replies"] = [r.text for r in attempts]
        if keys is not None:
            row["cache_keys"] = list(keys[(item_id, order)])
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
    towards (a)), so each order alone says little. The model's log-probability margin over
    the reference, averaged over the two orders, cancels a constant position bias; both
    rows of the item then carry the verdict that margin gives, and keep what their own order
    said (`order_preference`, `order_model_score`), from which the flip rate is measured."""
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
            row["order_preference"], row["order_model_score"] = row["preference"], row["model_score"]
            row["model_margin"] = round(margin, 4)
            row["preference"] = "tie" if abs(margin) <= tie_margin else (model_slot if margin > 0 else reference_slot)
            row["model_score"] = model_score(row["preference"], order)
            row["invalid"] = False


def scoring_differences(rows: list[dict]) -> dict[tuple, int]:
    """How the two scorings read a run's reply verdicts: (project's preference, AlpaCare's) ->
    rows. AlpaCare's reads the first attempt, as it never re-asked; the project's is the row's
    own (after any re-asks) when the run scored the project's way, else read from the replies."""
    counts: dict[tuple, int] = {}
    for row in rows:
        if "reply" not in row or row.get("logprobs") is not None:
            continue
        replies = row.get("replies") or [row["reply"]]
        project = row["preference"] if row.get("scoring", "project") == "project" else parse_reply(replies[-1])
        pair = (project, official_preference(replies[0]))
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    """python -m alpacare.judge VERDICTS.jsonl ...: how many verdicts the two scorings read differently."""
    import sys

    from .io import read_jsonl

    paths = sys.argv[1:] if argv is None else argv
    counts: dict[tuple, int] = {}
    for path in paths:
        for pair, n in scoring_differences(read_jsonl(path)).items():
            counts[pair] = counts.get(pair, 0) + n
    total, differ = sum(counts.values()), sum(n for (p, o), n in counts.items() if p != o)
    print(f"{total} reply verdicts in {len(paths)} file(s); {differ} read differently by the project's and AlpaCare's scoring")
    for (project, official), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  project {project!s:>4}  alpacare {official!s:>4}  {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
