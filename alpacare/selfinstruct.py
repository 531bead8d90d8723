"""Task generation (self-instruct, AlpaCare style): prompts, reply parsing, quarantine.

Two ways to ask the teacher, both through the LLM layer:
- `list`: the paper's way. One request shows 3 seed tasks and asks for the next ones as
  numbered `###` blocks; the reply is split and parsed. Needs a capable teacher (GPT-4).
- `fields`: for a small local teacher. Each task is one constrained completion after the
  same 3 examples: the field names are forced and only the values are sampled.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

from .llm import Request
from .seeds import NO_INPUT

FIELDS = ("Type", "Topic", "View", "Difficulty", "Instruction", "Input")
# tokens each field value may take in `fields` mode
FIELD_MAX_TOKENS = {"Type": 12, "Topic": 12, "View": 12, "Difficulty": 3, "Instruction": 80, "Input": 160}

PROMPTS = Path(__file__).resolve().parent.parent / "prompts" / "selfinstruct"
DEFAULT_PROMPT = {"list": "prompts/selfinstruct/list.txt", "fields": "prompts/selfinstruct/fields.txt"}


def load_template(path: str | Path) -> str:
    """A generation prompt template: text with `{examples}` (the seed tasks shown, as
    numbered ### blocks) and optionally `{num_tasks}`; the next task's header follows it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the prompt template ({err})") from None
    if "{examples}" not in text:
        raise ValueError(f"{path}: the prompt template has no {{examples}} placeholder for the seed tasks")
    # the file's final newline is not part of the prompt: the examples end with one already
    return text[:-1] if text.endswith("\n") else text


def read_prompt(path: str | Path | None) -> str | None:
    """A system prompt file's text (None for no file), stripped of the final newline."""
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the system prompt ({err})") from None
    if not text:
        raise ValueError(f"{path}: the system prompt is empty")
    return text


def derived_seed(*parts) -> int:
    """A stable 32-bit seed from (run seed, what identifies the request): the same request is
    asked the same way on every run, resume or retry."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


def sample_examples(seeds: list[dict], run_seed: int, request_index: int, k: int) -> list[dict]:
    return random.Random(derived_seed(run_seed, "examples", request_index)).sample(seeds, k)


def format_task(number: int, task: dict) -> str:
    lines = [f"### {number}"] + [f"{f}: {task[f.lower()]}" for f in FIELDS]
    return "\n".join(lines) + "\n"


def build_requests(seeds, *, model, prompting, run_seed, requests, examples_per_request, tasks_per_request, sampling,
                   template, system=None, first=0):
    """Requests number first .. first+requests-1, each tagged with (request number, slot).
    A request's seed examples and sampling seed derive from (run seed, its number) alone, so
    asking for more, resuming or retrying never changes what an earlier request asked."""
    out = []
    for r in range(first, first + requests):
        examples = sample_examples(seeds, run_seed, r, examples_per_request)
        shown = "".join(format_task(i + 1, t) for i, t in enumerate(examples))
        next_number = len(examples) + 1
        prompt = (template.replace("{num_tasks}", str(tasks_per_request + len(examples)))
                  .replace("{examples}", shown) + f"### {next_number}\n")
        if prompting == "list":
            # the stop keeps the teacher from writing past the last task asked for
            stop = (f"### {len(examples) + tasks_per_request + 1}",)
            request = Request.chat(model, prompt, system=system, stop=stop, seed=derived_seed(run_seed, "request", r), **sampling)
            out.append(((r, 0), request))
        else:
            fields = tuple((f, FIELD_MAX_TOKENS[f]) for f in FIELDS)
            params = {k: v for k, v in sampling.items() if k != "max_tokens"}
            for slot in range(tasks_per_request):
                request = Request(model=model, prompt=prompt, fields=fields, seed=derived_seed(run_seed, "task", r, slot), **params)
                out.append(((r, slot), request))
    return out


def response_request(model: str, task: dict, *, run_seed: int, system: str | None, sampling: dict) -> Request:
    """The responder's request for one task. Its sampling seed derives from the task's content
    (instruction and input), never its position, so after any change upstream (a dedup
    setting, more generated tasks) every unchanged task is a cache hit."""
    from .data import user_message

    seed = derived_seed(run_seed, "response", task["instruction"], task["input"])
    return Request.chat(model, user_message(task["instruction"], task["input"]), system=system, seed=seed, **sampling)


_BLOCK_SPLIT = re.compile(r"^\s*###.*$", re.MULTILINE)
_FIELD_LINE = re.compile(r"^\s*(type|topic|view|difficulty|instruction|input)\s*:\s?(.*)$", re.IGNORECASE)


def split_blocks(reply: str, prompting: str) -> list[str]:
    if prompting == "fields":
        return [reply]
    # the reply continues after "### 4\n", so the first block has no header of its own
    return [b for b in _BLOCK_SPLIT.split(reply) if b.strip()]


def parse_task(block: str) -> tuple[dict | None, str | None]:
    """(task, None) or (None, why it was rejected). Values may span lines (inputs often do)."""
    fields: dict[str, list[str]] = {}
    current = None
    for line in block.strip("\n").split("\n"):
        m = _FIELD_LINE.match(line)
        if m and m.group(1).lower() not in fields:
            current = m.group(1).lower()
            fields[current] = [m.group(2)]
        elif current is not None:
            fields[current].append(line)
        elif line.strip():
            return None, f"text before the first field: {line.strip()[:60]!r}"
    task = {k: "\n".join(v).strip() for k, v in fields.items()}
    missing = [f.lower() for f in FIELDS if f.lower() not in task]
    if missing:
        return None, f"missing field(s): {', '.join(missing)}"
    for f in ("type", "topic", "view", "instruction"):
        if not task[f]:
            return None, f"empty field: {f}"
    m = re.fullmatch(r"\s*([1-5])(\s*/\s*5)?\s*\.?", task["difficulty"])
    if not m:
        return None, f"difficulty not 1-5: {task['difficulty'][:20]!r}"
    task["difficulty"] = int(m.group(1))
    if len(task["instruction"].split()) < 3:
        return None, "instruction shorter than 3 words"
    if task["input"].strip().lower() in ("", "<noinput>", "none", "n/a", "no input"):
        task["input"] = NO_INPUT
    if task["input"] != NO_INPUT and task["input"].strip() == task["instruction"].strip():
        return None, "input repeats the instruction"
    return {f.lower(): task[f.lower()] for f in FIELDS}, None


# the reason a reject records for the last block of a reply cut at the teacher's max_tokens
TRUNCATED = "cut at max_tokens"


def parse_replies(tagged_replies, prompting: str) -> tuple[list[dict], list[dict]]:
    """tagged_replies: ((request, slot), Response). Returns (tasks, rejects); a reject keeps
    the raw text and the reason so nothing the teacher wrote is lost. A `list` reply that hit
    max_tokens (finish_reason length) ends inside its last task ("... after cycle 2 of"), which
    may still parse: that block is dropped as a reject (TRUNCATED), so it is counted. (`fields`
    replies cap each value by design, FIELD_MAX_TOKENS, and lose no task.)"""
    tasks, rejects = [], []
    for (r, slot), response in tagged_replies:
        origin = {"request": r, "slot": slot}
        if not response.ok:
            rejects.append({**origin, "reason": f"call failed: {response.error}", "raw": ""})
            continue
        blocks = split_blocks(response.text, prompting)
        if prompting == "list" and response.finish_reason == "length" and blocks:
            rejects.append({**origin, "block": len(blocks) - 1, "reason": f"{TRUNCATED}: the reply ended inside this task",
                            "raw": blocks.pop()})
        for b, block in enumerate(blocks):
            task, why = parse_task(block)
            where = {**origin, "block": b}
            if task is None:
                rejects.append({**where, "reason": why, "raw": block})
            else:
                tasks.append({**task, **where})
    return tasks, rejects
