"""USMLE-style multiple-choice questions, from medAlpaca's hub dataset, a URL, a local file or a
folder in medAlpaca's layout, normalized to {id, step, question, options, answer}.

medAlpaca's dataset (medalpaca/medical_meadow_usmle_self_assessment) is not one table: per step
a list of questions (`step1.json`: {no, question, options}), a separate answer key
(`step1_solutions.json`: {no: letter}), and `question_with_images.json` ({"step1": [no, ...]})
naming the questions that need a picture. `datasets.load_dataset` cannot read it as one
dataset (medAlpaca issue #29), so its files are fetched as they are and joined here; any
other hub dataset is read with `datasets.load_dataset` and a field mapping.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from ..published import is_reference
from ..io import read_json, read_records

OFFICIAL_HUB = "medalpaca/medical_meadow_usmle_self_assessment"
# medAlpaca's README: questions left per step once those with images are removed
OFFICIAL_COUNTS = {"1": 92, "2": 110, "3": 122}
OFFICIAL_STEPS = ("1", "2", "3")
IMAGE_LIST = "question_with_images.json"
DEFAULT_FIELDS = {"id": "id", "step": "step", "question": "question", "options": "options", "answer": "answer", "image": "image"}


class QuestionError(ValueError):
    """Questions that cannot be scored as given; the message names the source and the items."""


def official_files() -> list[str]:
    return [IMAGE_LIST] + [f"step{s}{suffix}.json" for s in OFFICIAL_STEPS for suffix in ("", "_solutions")]


def is_official_layout(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / IMAGE_LIST).exists()


def fetch_official(revision: str | None = None) -> Path:
    """The official files, downloaded (and cached) by huggingface_hub, as a local folder."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(OFFICIAL_HUB, repo_type="dataset", revision=revision, allow_patterns=official_files()))


def read_official(folder: str | Path) -> list[dict]:
    """Raw questions from a folder in medAlpaca's layout, with `image` set from its image list.
    Every number the image list names must be a question of that step: a list that named
    something else (positions instead of numbers, another version of the files) would
    silently keep the wrong questions."""
    folder = Path(folder)
    images = read_json(folder / IMAGE_LIST)
    raw = []
    for step in OFFICIAL_STEPS:
        step_file = folder / f"step{step}.json"
        questions = read_json(step_file)
        solutions = {str(k).strip(): v for k, v in read_json(folder / f"step{step}_solutions.json").items()}
        numbers = [str(q.get("no", "")).strip() for q in questions]
        with_images = {str(n).strip() for n in images.get(f"step{step}", [])}
        unknown = sorted(with_images - set(numbers), key=_natural)
        if unknown:
            raise QuestionError(f"{folder / IMAGE_LIST}: step{step} names question(s) {', '.join(unknown)}, "
                                f"which {step_file.name} does not have")
        for n, (number, q) in enumerate(zip(numbers, questions)):
            raw.append({
                "id": f"step{step}-{number or n}",
                "step": step,
                "question": q.get("question"),
                "options": q.get("options"),
                "answer": solutions.get(number),
                "image": number in with_images,
            })
    return raw


def map_fields(rows: list[dict], fields: dict, source: str) -> list[dict]:
    """Flat records (a file, a URL, a hub dataset) through the config's field mapping."""
    fields = {**DEFAULT_FIELDS, **(fields or {})}
    raw = []
    for n, row in enumerate(rows):
        if not isinstance(row, dict):
            raise QuestionError(f"{source}: record {n} is not an object")
        missing = [fields[k] for k in ("question", "options", "answer") if fields[k] not in row]
        if missing:
            raise QuestionError(f"{source}: record {n} has no field {', '.join(map(repr, missing))} "
                                f"(map other names with usmle.questions.fields; this record has {', '.join(sorted(row))})")
        raw.append({
            "id": str(row.get(fields["id"], n)),
            "step": row.get(fields["step"], "all"),
            "question": row[fields["question"]],
            "options": row[fields["options"]],
            "answer": row[fields["answer"]],
            "image": bool(row.get(fields["image"])),
        })
    return raw


def normalize(raw: list[dict], source: str, *, on_bad: str = "fail", expected: dict | None = None,
              limit_per_step: int | None = None) -> tuple[list[dict], dict]:
    """Drop questions with images, check the rest, count per step. Returns (questions, summary).
    A bad question (no question text, no options, an answer key that is not one of its
    options) fails the load naming every bad id, or with on_bad='skip' is left out and listed.
    `expected` (step -> count) is checked after images and skipped questions are removed."""
    steps: dict[str, dict] = {}
    kept, bad, seen = [], [], set()
    for item in raw:
        step = normalize_step(item["step"])
        counts = steps.setdefault(step, {"questions": 0, "with_images": 0, "bad": 0, "kept": 0})
        counts["questions"] += 1
        if item["id"] in seen:
            raise QuestionError(f"{source}: question id {item['id']!r} appears twice")
        seen.add(item["id"])
        if item["image"]:
            counts["with_images"] += 1
            continue
        question, problem = _check(item, step)
        if problem:
            counts["bad"] += 1
            bad.append({"id": item["id"], "problem": problem})
            continue
        if limit_per_step and counts["kept"] >= limit_per_step:
            continue
        counts["kept"] += 1
        kept.append(question)
    if bad and on_bad == "fail":
        shown = "; ".join(f"{b['id']}: {b['problem']}" for b in bad[:20])
        raise QuestionError(f"{source}: {len(bad)} bad question(s) (set usmle.questions.on_bad_question: skip "
                            f"to leave them out): {shown}")
    if not kept:
        raise QuestionError(f"{source}: no questions left to ask (counts per step: {steps})")
    summary = {"source": source, "steps": steps, "questions": len(kept), "bad_questions": bad}
    if expected:
        summary["expected"] = {str(k): v for k, v in expected.items()}
        # limit_per_step shrinks a run on purpose; the check is on what the source holds
        available = {s: c["questions"] - c["with_images"] - c["bad"] for s, c in steps.items()}
        wrong = {s: (available.get(s, 0), n) for s, n in summary["expected"].items() if available.get(s, 0) != n}
        if wrong:
            shown = ", ".join(f"step {s}: {got} (expected {n})" for s, (got, n) in sorted(wrong.items()))
            raise QuestionError(f"{source}: questions without images per step do not match the expected counts: {shown}")
    return kept, summary


def normalize_step(step) -> str:
    """'Step 1', 'step1', 1 and '1' are all step '1'."""
    text = str(step).strip()
    match = re.fullmatch(r"(?i)step\s*(\w+)", text)
    return match.group(1) if match else text


def normalize_options(options) -> dict[str, str]:
    """{letter: text}; a list gets the letters A, B, C... Empty options (a struct column with
    room for nine letters, most of them null) are dropped."""
    if isinstance(options, list):
        options = dict(zip(string.ascii_uppercase, options))
    if not isinstance(options, dict):
        return {}
    out = {}
    for key, text in options.items():
        if text is None or not str(text).strip():
            continue
        out[str(key).strip().strip("()").upper()] = " ".join(str(text).split())
    return out


def _check(item: dict, step: str) -> tuple[dict, str | None]:
    question = item["question"]
    options = normalize_options(item["options"])
    answer = str(item["answer"] or "").strip().strip("().").upper()
    if not isinstance(question, str) or not question.strip():
        return {}, "no question text"
    if not options:
        return {}, "no options"
    if not answer:
        return {}, "no answer key"
    if answer not in options:
        return {}, f"answer key {answer!r} is not one of the options ({', '.join(options)})"
    return {"id": item["id"], "step": step, "question": question.strip(), "options": options, "answer": answer}, None


def parse_source(source: str) -> tuple[str, str]:
    """('hub', id), ('url', address or published file) or ('path', path) from usmle.questions.source."""
    if source.startswith("hub:"):
        return "hub", source[len("hub:"):]
    if re.match(r"https?://", source) or is_reference(source):
        return "url", source
    return "path", source


def load_questions(settings: dict, download_dir: str | Path) -> tuple[list[dict], dict]:
    """settings: the config's usmle.questions section. Returns (questions, summary)."""
    kind, where = parse_source(settings["source"])
    expected = settings.get("expected_counts")
    if kind == "hub" and where == OFFICIAL_HUB:
        raw = read_official(fetch_official(settings.get("revision")))
        expected = expected or OFFICIAL_COUNTS
    elif kind == "hub":
        raw = map_fields(_hub_rows(where, settings), settings.get("fields"), settings["source"])
    elif kind == "url":
        from ..published import fetch

        tmp = Path(download_dir) / "usmle-questions.download"
        fetch(where, tmp)
        try:
            raw = map_fields(read_records(tmp), settings.get("fields"), where)
        finally:
            tmp.unlink(missing_ok=True)
    elif is_official_layout(where):
        raw = read_official(where)
    else:
        raw = map_fields(read_records(where), settings.get("fields"), where)
    label = settings["source"] + (f"@{settings['revision']}" if kind == "hub" and settings.get("revision") else "")
    return normalize(raw, label, on_bad=settings.get("on_bad_question", "fail"), expected=expected,
                     limit_per_step=settings.get("limit_per_step"))


def _hub_rows(name: str, settings: dict) -> list[dict]:
    from datasets import load_dataset

    return list(load_dataset(name, split=settings.get("split", "train"), revision=settings.get("revision")))


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
