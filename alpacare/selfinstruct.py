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

# AlpaCare's own generation prompt (`prompt: alpacare-official`), downloaded by pinned commit: the
# requirements file, and the script that writes the teacher's system prompt and lays the tasks out.
# Tasks are laid out in a prompt and a reply in one of two layouts: "project" (a "### N" line, then
# the six fields) or "alpacare" (utils.task_encode_prompt: a "###" line, then "N. Type: ..."; the
# prompt ends with "N. Type:", so the reply begins with the next task's type).
OFFICIAL = "alpacare-official"
OFFICIAL_PROMPT = "alpacare:prompt/instrcution_prompt.txt"   # the repository's spelling
OFFICIAL_SYSTEM = "alpacare:task_output_generation/task_generation.py"


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


def generation_prompts(prompt: str, system: str | None, prompting: str) -> dict:
    """The teacher's prompt template and system prompt as files or AlpaCare's own
    (`alpacare-official`, downloaded by pinned commit and checked): {template, system, layout,
    prompt, prompt_sha256, system_prompt, system_prompt_sha256} (sources and the first 16 hex
    digits of the SHA-256 of what was read, for the run summary and the dataset card)."""
    from .published import fetch_bytes, script_string, url_of

    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:16]

    out = {"system": None, "system_prompt": None, "system_prompt_sha256": None}
    if prompt == OFFICIAL:
        data = fetch_bytes(OFFICIAL_PROMPT)
        out.update(template=official_template(data.decode("utf-8")), layout="alpacare", prompt=url_of(OFFICIAL_PROMPT),
                   prompt_sha256=digest(data))
    else:
        out.update(template=load_template(prompt), layout="project", prompt=str(prompt),
                   prompt_sha256=digest(Path(prompt).read_bytes()))
    if prompting == "list" and system == OFFICIAL:
        data = fetch_bytes(OFFICIAL_SYSTEM)
        text = script_string(OFFICIAL_SYSTEM, "system_prompt", data)
        out.update(system=text, system_prompt=url_of(OFFICIAL_SYSTEM), system_prompt_sha256=digest(text.encode()))
    elif prompting == "list" and system:
        text = read_prompt(system)
        out.update(system=text, system_prompt=str(system), system_prompt_sha256=digest(Path(system).read_bytes()))
    return out


def derived_seed(*parts) -> int:
    """A stable 32-bit seed from (run seed, what identifies the request): the same request is
    asked the same way on every run, resume or retry."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


def sample_examples(seeds: list[dict], run_seed: int, request_index: int, k: int) -> list[dict]:
    return random.Random(derived_seed(run_seed, "examples", request_index)).sample(seeds, k)


def official_template(requirements: str) -> str:
    """AlpaCare's prompt around its published requirements, as task_generation.py builds it: the
    file, a newline, "\nList of N tasks:\n", then the examples. N is the number of new tasks
    asked per request, as AlpaCare's script writes it."""
    return requirements + "\n" + "\nList of {num_tasks} tasks:\n{examples}"


def format_task(number: int, task: dict, layout: str = "project") -> str:
    if layout == "alpacare":   # AlpaCare puts the instruction on one line, without a final colon
        instruction = re.sub(r"\s+", " ", task["instruction"]).strip().rstrip(":")
        values = {**task, "instruction": instruction}
        return f"###\n{number}. " + "\n".join(f"{f}: {values[f.lower()]}" for f in FIELDS) + "\n"
    lines = [f"### {number}"] + [f"{f}: {task[f.lower()]}" for f in FIELDS]
    return "\n".join(lines) + "\n"


def build_requests(seeds, *, model, prompting, run_seed, requests, examples_per_request, tasks_per_request, sampling,
                   template, system=None, first=0, layout="project"):
    """Requests number first .. first+requests-1, each tagged with (request number, slot).
    A request's seed examples and sampling seed derive from (run seed, its number) alone, so
    asking for more, resuming or retrying never changes what an earlier request asked."""
    out = []
    for r in range(first, first + requests):
        examples = sample_examples(seeds, run_seed, r, examples_per_request)
        shown = "".join(format_task(i + 1, t, layout) for i, t in enumerate(examples))
        next_number, after_last = len(examples) + 1, len(examples) + tasks_per_request + 1
        if layout == "alpacare":
            num_tasks, header, stop = tasks_per_request, f"###\n{next_number}. Type:", (f"###\n{after_last}",)
        else:
            num_tasks, header, stop = tasks_per_request + len(examples), f"### {next_number}\n", (f"### {after_last}",)
        prompt = template.replace("{num_tasks}", str(num_tasks)).replace("{examples}", shown) + header
        if prompting == "list":
            # the stop keeps the teacher from writing past the last task asked for (AlpaCare's script
            # stopped at task N + 1 counting the examples, which left 3 fewer new tasks per request)
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
_TASK_NUMBER = re.compile(r"^\s*\d+\s*\.\s*")   # "5. Type: ..." in AlpaCare's layout
_FIELD_LINE = re.compile(r"^\s*(type|topic|view|difficulty|instruction|input)\s*:\s?(.*)$", re.IGNORECASE)


def split_blocks(reply: str, prompting: str, layout: str = "project") -> list[str]:
    if prompting == "fields":
        return [reply]
    if layout == "alpacare":   # the reply continues after "4. Type:"; later tasks open with "###" and "N."
        blocks = [b for b in _BLOCK_SPLIT.split("Type:" + reply) if b.strip()]
        return [_TASK_NUMBER.sub("", b.lstrip("\n"), count=1) for b in blocks]
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


def parse_replies(tagged_replies, prompting: str, layout: str = "project") -> tuple[list[dict], list[dict]]:
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
        blocks = split_blocks(response.text, prompting, layout)
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
