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

from .llm import Request
from .seeds import NO_INPUT

FIELDS = ("Type", "Topic", "View", "Difficulty", "Instruction", "Input")
# tokens each field value may take in `fields` mode
FIELD_MAX_TOKENS = {"Type": 12, "Topic": 12, "View": 12, "Difficulty": 3, "Instruction": 80, "Input": 160}

REQUIREMENTS = """You are asked to come up with a set of {n} diverse medical task instructions.
Here are the requirements:
1. Every task belongs to the medical domain.
2. Tasks take varied points of view: patients, caregivers, nurses, medical students, clinicians and experts.
3. Topics range widely: diseases, treatment, diagnosis, epidemiology, pharmacology, pathophysiology, anatomy, genetics, medical education and more.
4. Task types vary: text generation, open Q&A, chat, rewriting, summarization, classification, information extraction, multiple-choice and USMLE-style Q&A, single-hop and multi-hop reasoning.
5. Difficulty runs from 1 (easiest) to 5 (hardest).
6. Phrase instructions in varied ways, mixing questions and imperatives.
7. If a task needs no input, write "<noinput>" as its input; otherwise give a concrete input of 50 to 200 words (symptoms, a clinical note, a report, an exam question with its choices).
8. Match the wording to the point of view: simple first person for patients, professional terms for clinicians.
9. Write each task as the lines 'Type:', 'Topic:', 'View:', 'Difficulty:', 'Instruction:', 'Input:' and start each task with '###'.

List of {n} tasks:
"""

FIELDS_PREAMBLE = "Below are diverse medical tasks written by clinicians. Each has a type, a topic, a point of view, a difficulty from 1 to 5, an instruction and an input.\n\n"


def derived_seed(*parts) -> int:
    """A stable 32-bit seed from (run seed, request index, ...): the same request is asked
    the same way on every run, resume or retry."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "big")


def sample_examples(seeds: list[dict], run_seed: int, request_index: int, k: int) -> list[dict]:
    return random.Random(derived_seed(run_seed, "examples", request_index)).sample(seeds, k)


def format_task(number: int, task: dict) -> str:
    lines = [f"### {number}"] + [f"{f}: {task[f.lower()]}" for f in FIELDS]
    return "\n".join(lines) + "\n"


def build_requests(seeds, *, model, prompting, run_seed, requests, examples_per_request, tasks_per_request, sampling):
    """All requests of the stage, each tagged with (request index, slot)."""
    out = []
    for r in range(requests):
        examples = sample_examples(seeds, run_seed, r, examples_per_request)
        shown = "".join(format_task(i + 1, t) for i, t in enumerate(examples))
        next_number = len(examples) + 1
        if prompting == "list":
            prompt = REQUIREMENTS.format(n=tasks_per_request + len(examples)) + shown + f"### {next_number}\n"
            # the stop keeps the teacher from writing past the last task asked for
            stop = (f"### {len(examples) + tasks_per_request + 1}",)
            out.append(
                ((r, 0), Request.chat(model, prompt, stop=stop, seed=derived_seed(run_seed, "request", r), **sampling))
            )
        else:
            prompt = FIELDS_PREAMBLE + shown + f"### {next_number}\n"
            fields = tuple((f, FIELD_MAX_TOKENS[f]) for f in FIELDS)
            for slot in range(tasks_per_request):
                params = {k: v for k, v in sampling.items() if k != "max_tokens"}
                request = Request(model=model, prompt=prompt, fields=fields, seed=derived_seed(run_seed, "task", r, slot), **params)
                out.append(((r, slot), request))
    return out


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


def parse_replies(tagged_replies, prompting: str) -> tuple[list[dict], list[dict]]:
    """tagged_replies: ((request, slot), Response). Returns (tasks, rejects); a reject keeps
    the raw text and the reason so nothing the teacher wrote is lost."""
    tasks, rejects = [], []
    for (r, slot), response in tagged_replies:
        origin = {"request": r, "slot": slot}
        if not response.ok:
            rejects.append({**origin, "reason": f"call failed: {response.error}", "raw": ""})
            continue
        for b, block in enumerate(split_blocks(response.text, prompting)):
            task, why = parse_task(block)
            where = {**origin, "block": b}
            if task is None:
                rejects.append({**where, "reason": why, "raw": block})
            else:
                tasks.append({**task, **where})
    return tasks, rejects
