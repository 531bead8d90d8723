"""Asking the questions and reading the answers: prompt templates, the option a free reply names
(generation), and the option a model finds likeliest (log-likelihood).

Two decodings. greedy (the default): a reply is read once, never re-asked: a reply that names
no option, or several, is unanswered and scores as wrong. medalpaca: medAlpaca's
eval/eval_usmle.py, for comparing with its published numbers: sampled (temperature 0.4, top_p
0.9, top_k 50, 128 new tokens) and sampled again, up to 5 tries in all, while the reply does
not begin like "C: ..." (which rewards lucky draws and hides how often a model does not
answer; each row records its tries). Each try's seed comes from the question's content and
the try's number, never its position, so a rerun draws the same replies.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import string
from pathlib import Path

import yaml

from ..data import user_message
from ..llm import Request
from ..template import alpaca_prompt

TEMPLATE_KEYS = ("instruction", "input", "option", "answer_prefix", "continuation")
NORMALISATIONS = ("none", "chars", "tokens")


class TemplateError(ValueError):
    pass


def load_template(path: str | Path) -> dict:
    """A prompt template file (prompts/usmle/*.yaml), checked by rendering a sample question."""
    try:
        template = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise TemplateError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(template, dict):
        raise TemplateError(f"{path}: must be a mapping with keys {', '.join(TEMPLATE_KEYS)}")
    missing = [k for k in TEMPLATE_KEYS if k not in template]
    unknown = sorted(set(template) - set(TEMPLATE_KEYS) - {"description"})
    if missing or unknown:
        raise TemplateError(f"{path}: " + "; ".join(filter(None, [
            missing and f"missing key(s) {', '.join(missing)}", unknown and f"unknown key(s) {', '.join(unknown)}"])))
    sample = {"question": "Q?", "options": {"A": "a", "B": "b"}}
    try:
        local_prompt(sample, template)
        continuations(sample, template, chat=False)
    except (KeyError, IndexError, ValueError) as err:
        raise TemplateError(f"{path}: a placeholder cannot be filled ({err!r}); use {{question}} and {{options}} "
                            "in instruction/input, {letter} and {text} in option/continuation") from None
    return template


def render_input(question: dict, template: dict) -> tuple[str, str]:
    options = "\n".join(template["option"].format(letter=k, text=v) for k, v in question["options"].items())
    fill = {"question": question["question"], "options": options}
    return template["instruction"].format(**fill), template["input"].format(**fill)


def local_prompt(question: dict, template: dict) -> str:
    """Tuned models and backbones: the project's one Alpaca template, the reply primed with the
    template's answer prefix."""
    return alpaca_prompt(*render_input(question, template)) + template["answer_prefix"]


def chat_message(question: dict, template: dict) -> str:
    """Chat models: the instruction and the question as one user message."""
    return user_message(*render_input(question, template))


def continuations(question: dict, template: dict, chat: bool) -> tuple[str, ...]:
    """What log-likelihood scores after the prompt, one per option. A chat reply starts a new
    turn, so leading whitespace (meant to follow the answer prefix) is dropped there."""
    texts = tuple(template["continuation"].format(letter=k, text=v) for k, v in question["options"].items())
    return tuple(t.lstrip() for t in texts) if chat else texts


DECODINGS = ("greedy", "medalpaca")
# eval_usmle.py's `sampling` dict and its ntries
MEDALPACA_SAMPLING = {"temperature": 0.4, "top_p": 0.9, "top_k": 50}
MEDALPACA_MAX_NEW_TOKENS = 128
MEDALPACA_TRIES = 5


def question_seed(question: dict, attempt: int) -> int:
    """A sampling seed from what the question asks (its text and options) and the try's number."""
    content = json.dumps([question["question"], question["options"], attempt], sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(content.encode()).digest()[:4], "big")


def generation_request(question: dict, template: dict, *, kind: str, model: str, max_new_tokens: int,
                       decoding: str = "greedy", attempt: int = 0) -> Request:
    """Greedy with max_new_tokens, or medAlpaca's sampling (its 128 tokens, seeded per question and try)."""
    if decoding == "medalpaca":
        params = {**MEDALPACA_SAMPLING, "max_tokens": MEDALPACA_MAX_NEW_TOKENS, "seed": question_seed(question, attempt)}
    elif decoding == "greedy":
        params = {"max_tokens": max_new_tokens}
    else:
        raise ValueError(f"unknown USMLE decoding {decoding!r} (known: {', '.join(DECODINGS)})")
    if kind == "alpaca":
        return Request(model=model, prompt=local_prompt(question, template), **params)
    return Request.chat(model, chat_message(question, template), **params)


def medalpaca_accepts(reply: str) -> bool:
    """eval_usmle.py's test of a try: with every character that is not an ASCII letter or digit
    trimmed from both ends, the reply begins with a capital letter, then ':' or '.' or nothing,
    a space and more text ("C: Aspirin", "B. Heparin", "A Warfarin")."""
    keep = set(string.ascii_letters + string.digits)
    start, end = 0, len(reply)
    while start < end and reply[start] not in keep:
        start += 1
    while end > start and reply[end - 1] not in keep:
        end -= 1
    return re.match(r"[A-Z](:|\.|) .+", reply[start:end]) is not None


def loglik_request(question: dict, template: dict, *, kind: str, model: str) -> Request:
    chat = kind != "alpaca"
    choices = continuations(question, template, chat)
    if chat:
        return Request.chat(model, chat_message(question, template), choices=choices)
    return Request(model=model, prompt=local_prompt(question, template), choices=choices)


# --- reading a free reply -------------------------------------------------------------------

# "the answer is (C)", "Answer: c", "correct option is C", "the correct choice would be c."
_EXPLICIT = re.compile(
    r"\b(?:answer|option|choice)\b(?:\s+to\s+the\s+question)?(?:\s+is|\s+would\s+be|\s*[:=])\s*:?\s*"
    r"(?:option\s+|choice\s+|letter\s+)?(\()?([A-Za-z])(?![A-Za-z'])(\))?(.?)", re.IGNORECASE)
# a letter marked as an option label: "(c)", "c)", or "C:"/"C." at the start of a line
_MARKED = re.compile(r"\(([A-Za-z])\)|(?<![A-Za-z(])([A-Za-z])\)|(?m:^\s*([A-Za-z])[:.](?=\s|$))")
# a bare capital letter standing alone ("I think B or C"); "A" and "I" are English words
_BARE = re.compile(r"(?<![A-Za-z'’-])([B-HJ-Z])(?![A-Za-z'’-])")
# ... unless they are listed with another letter: "either A or B", "A, C and D"
_LISTED = re.compile(r"(?<![A-Za-z'’-])([A-Z])(?=\s*(?:,|/|\bor\b|\band\b)\s*\(?[A-Z](?![A-Za-z'’-]))")


def extract_option(reply: str, options: dict[str, str], prefix: str = "") -> tuple[str | None, str]:
    """(letter, how) for the one option a reply names, or (None, why not). `prefix` is what the
    prompt already said before the reply (an answer prefix such as "The answer is")."""
    text = (reply or "").strip()
    if not text:
        return None, "empty reply"
    letters = set(options)
    # 1. the reply opens with an option label: "C", "C: ...", "(c) ...", "c) ...", "C. ..."
    lead = re.match(r"\s*\(?([A-Za-z])(?:\)|[:.]|\s*$)", text)
    if lead and lead.group(1).upper() in letters:
        letter = lead.group(1).upper()
        # "A: D-dimer" when D-dimer is option D: the label and the text disagree
        named = _texts_named(text[lead.end():].strip().split("\n")[0], options)
        if named and letter not in named:
            return None, f"label {letter} with the text of option {', '.join(sorted(named))}"
        return letter, "leading letter"
    # ... or a bare letter followed by that option's own text: "C Pulmonary embolism"
    lead = re.match(r"\s*([A-Z])\s+(.+)", text, re.DOTALL)
    if lead and lead.group(1) in letters and _norm(lead.group(2)).startswith(_norm(options[lead.group(1)])):
        return lead.group(1), "leading letter"
    full = f"{prefix} {text}" if prefix else text
    # 2. an explicit statement: "the answer is (C)"
    found = _valid([_stated(m, options) for m in _EXPLICIT.finditer(full)], letters)
    if found:
        return _one(found, "answer statement")
    # 3. letters marked as labels, or standing alone
    found = _valid([a or b or c for a, b, c in _MARKED.findall(text)], letters) | _valid(_BARE.findall(text), letters)
    found |= _valid(_LISTED.findall(text), letters)
    if found:
        return _one(found, "option letter")
    # 4. an option's own text, without its letter
    found = _texts_named(text, options)
    if found:
        return _one(found, "option text")
    return None, "names no option"


def _stated(match: re.Match, options: dict[str, str]) -> str | None:
    """The letter of an answer statement, unless it is the article of a phrase: "the answer is
    a pulmonary embolism" names no letter (the option's text may still be found later)."""
    opened, letter, closed, after = match.groups()
    if opened or closed or after in ("", ".", ",", ":", ";", "!", "\n"):
        return letter
    if letter.islower() or letter in "AI":
        rest = match.string[match.end(2):]
        return letter if _norm(rest).startswith(_norm(options.get(letter.upper(), "\0"))) else None
    return letter


def _valid(matches, letters: set[str]) -> set[str]:
    return {m.upper() for m in matches if m and m.upper() in letters}


def _one(found: set[str], how: str) -> tuple[str | None, str]:
    if len(found) == 1:
        return next(iter(found)), how
    return None, f"names several options ({', '.join(sorted(found))})"


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _texts_named(reply: str, options: dict[str, str]) -> set[str]:
    """Options whose whole text the reply contains; an option that is only found inside a longer
    named option ("Aspirin" inside "Aspirin and clopidogrel") does not count on its own."""
    padded = f" {_norm(reply)} "
    spans = {}
    for letter, option in options.items():
        needle = _norm(option)
        if not needle:
            continue
        spans[letter] = [(m.start(), m.start() + len(needle)) for m in re.finditer(re.escape(f" {needle} "), padded)]
    named = set()
    for letter, found in spans.items():
        for start, end in found:
            inside = any(o != letter and s <= start and end <= e and (e - s) > (end - start)
                         for o, other in spans.items() for s, e in other)
            if not inside:
                named.add(letter)
                break
    return named


# --- log-likelihood --------------------------------------------------------------------------

def choose(logprobs: list[float], lengths: list[int] | None, letters: list[str]) -> tuple[str | None, list[float]]:
    """The option with the highest (normalised) log-probability; a tie at the top is no answer.
    lengths: per option, what the sum is divided by (characters or tokens), or None."""
    scores = [lp / max(1, n) for lp, n in zip(logprobs, lengths)] if lengths else list(logprobs)
    best = max(scores)
    top = [letter for letter, s in zip(letters, scores) if math.isclose(s, best, rel_tol=0, abs_tol=1e-9)]
    return (top[0] if len(top) == 1 else None), scores
