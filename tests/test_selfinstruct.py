import json

import pytest

from alpacare.ledger import read as read_ledger, summarize

from alpacare.llm import Response
from alpacare.selfinstruct import (build_requests, load_template, parse_replies, parse_task, read_prompt, response_request,
                                   sample_examples)
from alpacare.seeds import load_seeds
from conftest import ROOT

SEEDS = load_seeds([ROOT / "seeds" / "medical_seed_tasks.json"])
PROMPTS = ROOT / "prompts" / "selfinstruct"
LIST = load_template(PROMPTS / "list.txt")
FIELDS_TEMPLATE = load_template(PROMPTS / "fields.txt")

# what a capable teacher returns in `list` mode: it continues after "### 4\n"
LIST_REPLY = """Type: Open Q&A
Topic: Cardiology
View: Patient
Difficulty: 2
Instruction: Why does my doctor want me to cut down on salt?
Input: <noinput>
### 5
Type: Multiple-choice Q&A
Topic: Pharmacology
View: Medical Student
Difficulty: 4
Instruction: Answer the question and explain your choice.
Input: Which drug class causes a dry cough?
A. Beta blockers
B. ACE inhibitors
C. Thiazides
### 6
Type: Summarization
Topic: Oncology
View: Clinician
Difficulty: seven
Instruction: Summarize the pathology report.
Input: Invasive ductal carcinoma, grade 2.
### 7
Topic: Anatomy
Instruction: Name the bones of the forearm.
"""


def test_list_reply_is_split_and_parsed_with_rejects_kept():
    tasks, rejects = parse_replies([((0, 0), Response(text=LIST_REPLY))], "list")
    assert [t["instruction"] for t in tasks] == [
        "Why does my doctor want me to cut down on salt?",
        "Answer the question and explain your choice.",
    ]
    assert tasks[1]["input"].endswith("C. Thiazides")  # multi-line input kept whole
    assert tasks[0]["difficulty"] == 2 and tasks[0]["input"] == "<noinput>"
    reasons = [r["reason"] for r in rejects]
    assert reasons[0].startswith("difficulty not 1-5") and reasons[1].startswith("missing field(s): type")
    assert "Name the bones of the forearm." in rejects[1]["raw"]  # the raw text is quarantined, not lost


def test_a_reply_cut_at_max_tokens_loses_its_last_task_and_counts_it(tmp_path):
    # the teacher stopped at max_tokens inside task 6: what it wrote still parses as a task
    cut = LIST_REPLY.split("### 6")[0] + "### 6\nType: Open Q&A\nTopic: Oncology\nView: Clinician\nDifficulty: 3\n" \
        "Instruction: Explain the next step after cycle 2 of\nInput: <noinput>"
    tasks, rejects = parse_replies([((0, 0), Response(text=cut, finish_reason="length"))], "list")
    assert [t["instruction"] for t in tasks] == ["Why does my doctor want me to cut down on salt?",
                                                 "Answer the question and explain your choice."]
    assert [r["reason"].split(":")[0] for r in rejects] == ["cut at max_tokens"]
    assert "after cycle 2 of" in rejects[0]["raw"] and rejects[0]["block"] == 2
    # the same reply ended by the model itself keeps all three
    assert len(parse_replies([((0, 0), Response(text=cut))], "list")[0]) == 3

    # the dataset card states how many tasks were cut
    from alpacare.io import write_json, write_jsonl
    from alpacare.stages.stats import dataset_card

    write_jsonl(tmp_path / "seeds.jsonl", SEEDS[:3])
    write_jsonl(tmp_path / "rejects.jsonl", rejects)
    write_jsonl(tmp_path / "responses.jsonl", [{**t, "output": "Less salt lowers blood pressure."} for t in tasks])
    write_json(tmp_path / "gen.json", {"rounds": 1, "request_cap": 1, "requests": 1, "failed_calls": 0, "tasks": 2,
                                       "teacher": "t", "model": "m", "prompting": "list", "sampling": {}, "run_seed": 1,
                                       "examples_per_request": 3, "tasks_per_request": 12, "prompt": "p", "prompt_sha256": "x"})
    write_json(tmp_path / "dedup.json", {"kept": 2, "threshold": 0.7, "policy": "keep-first", "candidates": 2})
    dataset_card(tmp_path / "card.md", dataset="d", seeds_path=tmp_path / "seeds.jsonl", summary_path=tmp_path / "gen.json",
                 rejects_path=tmp_path / "rejects.jsonl", report_path=tmp_path / "dedup.json",
                 responses_path=tmp_path / "responses.jsonl", seed_sources=["seeds.json"], responder={"name": "r"})
    assert "| of which cut at the teacher's max_tokens (the reply's last task, dropped) | 1 |" in (tmp_path / "card.md").read_text()


def test_fields_reply_and_failed_call():
    text = "Type: Chat\nTopic: Neurology\nView: Nurse\nDifficulty: 3\nInstruction: Explain how to assess a GCS score.\nInput: <noinput>\n"
    tasks, rejects = parse_replies(
        [((0, 0), Response(text=text)), ((0, 1), Response(text="", finish_reason="error", error="HTTP 500"))], "fields"
    )
    assert tasks[0]["view"] == "Nurse" and tasks[0]["slot"] == 0
    assert rejects == [{"request": 0, "slot": 1, "reason": "call failed: HTTP 500", "raw": ""}]


def test_parse_task_rejects_with_reasons():
    assert parse_task("just some prose")[1].startswith("text before the first field")
    ok = "Type: Chat\nTopic: X\nView: Y\nDifficulty: 5/5\nInstruction: Do the thing now please\nInput: none"
    task, why = parse_task(ok)
    assert why is None and task["difficulty"] == 5 and task["input"] == "<noinput>"
    assert parse_task(ok.replace("Do the thing now please", "Hi"))[1] == "instruction shorter than 3 words"


def test_requests_are_deterministic_per_index():
    sampling = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 1.5, "max_tokens": 3072}
    a = build_requests(SEEDS, model="m", prompting="list", run_seed=1, requests=3, examples_per_request=3,
                       tasks_per_request=12, sampling=sampling, template=LIST)
    b = build_requests(SEEDS, model="m", prompting="list", run_seed=1, requests=5, examples_per_request=3,
                       tasks_per_request=12, sampling=sampling, template=LIST)
    assert [r for _, r in a] == [r for _, r in b][:3]  # asking for more never changes earlier requests
    later = build_requests(SEEDS, model="m", prompting="list", run_seed=1, requests=2, first=3, examples_per_request=3,
                           tasks_per_request=12, sampling=sampling, template=LIST)
    assert later == b[3:]  # a later round asks exactly what one big round would have asked
    assert len({r.messages for _, r in a}) == 3
    assert a[0][1].stop == ("### 16",) and a[0][1].presence_penalty == 1.5
    assert sample_examples(SEEDS, 1, 0, 3) != sample_examples(SEEDS, 2, 0, 3)


def test_fields_requests_share_a_prompt_but_not_a_seed():
    tagged = build_requests(SEEDS, model="m", prompting="fields", run_seed=1, requests=2, examples_per_request=3,
                            tasks_per_request=4, sampling={"temperature": 0.7, "top_p": 0.9}, template=FIELDS_TEMPLATE)
    assert len(tagged) == 8
    first = [r for (req, _), r in tagged if req == 0]
    assert len({r.prompt for r in first}) == 1 and len({r.seed for r in first}) == 4
    assert [name for name, _ in first[0].fields] == ["Type", "Topic", "View", "Difficulty", "Instruction", "Input"]

    assert first[0].prompt.startswith("Below are diverse medical tasks") and first[0].prompt.endswith("\n### 4\n")


# --- the prompts: AlpaCare's structure and every one of its requirements, in the project's words ----

REQUIREMENTS = [
    "within medicine",                                   # medical domain only
    "patients, caregivers, nurses, medical students",    # points of view
    "epidemiology, pharmacology, pathophysiology",      # topics
    "USMLE-style questions, multiple-choice questions, single-hop reasoning and multi-hop reasoning",  # formats
    "MUST include every format",                         # every format represented
    "from 1 (easiest) to 5 (hardest)",                   # difficulty
    "mix questions with commands",                       # varied language
    "write <noinput> as its input",                      # no-input marker
    "50 to 200 words",                                   # input length
    "never ask the user to supply it",                   # inputs written out
    "all answer choices in the input",                   # MCQ/USMLE question and choices in the input
    "longer than 50 words",                              # USMLE length
    "first person",                                      # view-matched language
    "clearly different in length",                       # distinct input lengths
    "'Type:', 'Topic:', 'View:', 'Difficulty:', 'Instruction:' and 'Input:'",  # structure
]


@pytest.mark.parametrize("phrase", REQUIREMENTS)
def test_list_prompt_has_every_requirement(phrase):
    assert phrase in " ".join(LIST.split())


def test_list_request_is_system_plus_numbered_examples():
    system = read_prompt(PROMPTS / "teacher_system.txt")
    sampling = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 1.5, "max_tokens": 3072}
    (tag, request), = build_requests(SEEDS, model="gpt-4", prompting="list", run_seed=7, requests=1, first=41,
                                     examples_per_request=3, tasks_per_request=12, sampling=sampling, template=LIST, system=system)
    assert tag == (41, 0)
    (role, text), (user_role, prompt) = request.messages
    assert (role, user_role) == ("system", "user") and text == system
    assert "Invent 15 new, varied tasks" in prompt and "List of 15 tasks:\n### 1\nType: " in prompt
    assert prompt.endswith("\n### 4\n") and prompt.count("Instruction: ") == 3
    assert (request.temperature, request.top_p, request.presence_penalty, request.stop) == (1.0, 1.0, 1.5, ("### 16",))


def test_template_without_examples_placeholder_names_the_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Write {num_tasks} tasks.\n")
    with pytest.raises(ValueError, match=r"mine\.txt: the prompt template has no \{examples\} placeholder"):
        load_template(path)


def test_responder_prompt_has_alpacare_requirements():
    text = read_prompt(PROMPTS / "responder_system.txt")
    assert text.startswith("You are a medical expert")
    for phrase in ("intermediate steps", "come before the final answer", '"The answer is (your choice)."',
                   "Do not use that closing sentence for any other kind of task"):
        assert phrase in text


def test_response_request_identity_is_the_task_content():
    sampling = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 1.5, "max_tokens": 300}
    tasks = [{"instruction": s["instruction"], "input": s["input"]} for s in SEEDS[:5]]
    tasks.append({"instruction": "Summarize the note below.", "input": "Day 2 after surgery, afebrile, eating."})
    before = [response_request("m", t, run_seed=3, system="S", sampling=sampling) for t in tasks]
    after = [response_request("m", t, run_seed=3, system="S", sampling=sampling) for t in tasks[1:]]
    assert after == before[1:]  # dropping a task changes no other request
    assert len({r.seed for r in before}) == len(before)
    other_input = dict(tasks[0], input="A different clinical note.")
    assert response_request("m", other_input, run_seed=3, system="S", sampling=sampling).seed != before[0].seed
    assert response_request("m", tasks[0], run_seed=4, system="S", sampling=sampling).seed != before[0].seed
    with_input = next(r for r, t in zip(before, tasks) if t["input"] != "<noinput>")
    assert "\n\n" in with_input.messages[-1][1]  # the input joined to the instruction by a blank line


# --- the stages through the real openai client against the local wire-format server --------------

from alpacare.io import read_json, read_jsonl, write_jsonl  # noqa: E402
from alpacare.stages.selfinstruct import dedup_tasks, generate_tasks, respond  # noqa: E402
from fakeapi import FakeAPI  # noqa: E402

PAPER_RESPONSE = {"temperature": 1.0, "top_p": 1.0, "presence_penalty": 1.5, "max_tokens": 300}


@pytest.fixture
def api(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the stages write their shards to results/ledger/
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with FakeAPI() as server:
        yield server


def served(api):
    return {"provider": "openai", "model": "gpt-3.5-turbo", "base_url": api.openai_url, "keyless": True}


def ledger(stage):
    return [row for row in read_ledger("results/ledger") if row["stage"] == stage]


def test_removing_a_task_leaves_every_other_response_a_cache_hit(api, tmp_path):
    settings = {"cache": str(tmp_path / "cache.sqlite"), "max_concurrency": 2, "max_retries": 0,
                "ledger": str(tmp_path / "ledger.jsonl")}
    tasks = [dict(s, request=0, slot=0, block=n) for n, s in enumerate(SEEDS[:8])]
    write_jsonl("tasks.jsonl", tasks)
    kwargs = dict(responder="gpt-3.5-turbo", spec=served(api), settings=settings, model_dir=None, sampling=PAPER_RESPONSE,
                  run_seed=42, system_path=PROMPTS / "responder_system.txt")
    respond("tasks.jsonl", "responses.jsonl", **kwargs)
    assert len(api.requests) == 8
    body = api.requests[0]["body"]
    assert body["messages"][0] == {"role": "system", "content": read_prompt(PROMPTS / "responder_system.txt")}
    assert (body["temperature"], body["top_p"], body["presence_penalty"], body["max_tokens"]) == (1.0, 1.0, 1.5, 300)
    first = read_jsonl("responses.jsonl")

    write_jsonl("tasks.jsonl", tasks[1:])  # e.g. a dedup change dropped the first task
    respond("tasks.jsonl", "responses.jsonl", **kwargs)
    assert len(api.requests) == 8  # nothing asked again
    total = summarize(tmp_path / "ledger.jsonl")[-1]
    assert (total["calls"], total["cache_hits"]) == (8, 7)  # 8 paid in the first run, none in the second
    assert read_jsonl("responses.jsonl") == first[1:]


def test_target_tasks_asks_in_rounds_until_enough_survive(api, tmp_path):
    """The fake teacher echoes the prompt, so each request yields its 3 seed examples as tasks
    (they survive a dedup threshold of 1.0): 1 request, then ceil(4 / 3 * 1.1) = 2 more."""
    settings = {"cache": str(tmp_path / "cache.sqlite"), "max_concurrency": 2, "max_retries": 0}
    write_jsonl("seeds.jsonl", SEEDS)
    kwargs = dict(teacher="gpt-4", spec=dict(served(api), model="gpt-4"), settings=settings, model_dir=None,
                  prompting="list", run_seed=5, requests=50, examples_per_request=3, tasks_per_request=12,
                  sampling={"temperature": 1.0, "top_p": 1.0, "presence_penalty": 1.5, "max_tokens": 3072},
                  prompt_path=PROMPTS / "list.txt", system_path=PROMPTS / "teacher_system.txt",
                  target_tasks=7, dedup_settings={"threshold": 1.0, "policy": "keep-first"})
    generate_tasks("seeds.jsonl", "raw.jsonl", "rejects.jsonl", "generation.json", **kwargs)
    summary = read_json("generation.json")
    assert (summary["requests"], summary["rounds"], summary["tasks"]) == (3, 2, 9)
    assert summary["surviving_dedup"] == 9 and summary["prompt_sha256"] and summary["system_prompt"].endswith("teacher_system.txt")
    assert summary["reject_reasons"] == {"text before the first field": 3}  # the echoed requirements
    assert [t["request"] for t in read_jsonl("raw.jsonl")] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(api.requests) == 3 and api.requests[0]["body"]["messages"][0]["role"] == "system"

    dedup_tasks("raw.jsonl", "seeds.jsonl", "tasks.jsonl", "report.json", threshold=1.0, policy="keep-first", target_tasks=7)
    assert len(read_jsonl("tasks.jsonl")) == 7 and read_json("report.json")["beyond_target"] == 2

    generate_tasks("seeds.jsonl", "raw2.jsonl", "rejects2.jsonl", "generation2.json", **kwargs)  # a rerun asks nothing
    assert len(api.requests) == 3 and read_jsonl("raw2.jsonl") == read_jsonl("raw.jsonl")


def test_request_cap_ends_generation_short_of_the_target(api, tmp_path):
    settings = {"cache": str(tmp_path / "cache.sqlite"), "max_concurrency": 2, "max_retries": 0}
    write_jsonl("seeds.jsonl", SEEDS)
    generate_tasks("seeds.jsonl", "raw.jsonl", "rejects.jsonl", "generation.json", teacher="gpt-4",
                   spec=dict(served(api), model="gpt-4"), settings=settings, model_dir=None, prompting="list", run_seed=5,
                   requests=4, examples_per_request=3, tasks_per_request=12, sampling={"max_tokens": 3072},
                   prompt_path=PROMPTS / "list.txt", target_tasks=100, dedup_settings={"threshold": 0.7, "policy": "keep-first"})
    summary = read_json("generation.json")
    # every echoed task is a seed, so none survives; the cap stops it
    assert summary["requests"] == 4 and summary["surviving_dedup"] == 0 and summary["system_prompt"] is None


# --- a real snakemake run of the self-instruct rules and the statistics ----------------------------

import subprocess  # noqa: E402
import sys  # noqa: E402

import yaml  # noqa: E402

from conftest import copy_project  # noqa: E402


@pytest.mark.workflow
def test_selfinstruct_rules_card_and_statistics(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    project = copy_project(tmp_path)
    config = yaml.safe_load((project / "config.yaml").read_text())
    with FakeAPI() as server:
        config["llms"]["served"] = {"provider": "openai", "model": "gpt-4", "base_url": server.openai_url, "keyless": True}
        config["selfinstruct"].update(teacher="served", responder="served", prompting="list", requests=10, target_tasks=5,
                                      dedup={"threshold": 1.0, "policy": "keep-first"},
                                      sampling={"temperature": 1.0, "top_p": 1.0, "presence_penalty": 1.5, "max_tokens": 3072},
                                      response_sampling={"temperature": 1.0, "top_p": 1.0, "presence_penalty": 1.5, "max_tokens": 300})
        config["stats"] = {"datasets": ["medinstruct"], "spacy_models": ["no_such_pipeline_xyz"]}
        (project / "si.yaml").write_text(yaml.safe_dump(config))
        targets = ["results/data/medinstruct.card.md", "results/stats/medinstruct/table.md", "results/stats/medinstruct/verbs.md"]
        run = subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", "1", "--configfile", "si.yaml"],
                             cwd=project, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        asked = len(server.requests)
    r = project / "results"
    # 2 requests (3 echoed seed examples each) reach the target of 5; the dedup keeps the first 5
    assert asked == 2 + 5
    assert json.loads((r / "selfinstruct/generation.json").read_text())["requests"] == 2
    assert len(read_jsonl(r / "selfinstruct/tasks.jsonl")) == 5
    card = (r / "data/medinstruct.card.md").read_text()
    for line in ("| requests to the teacher (2 round(s), cap 10, target 5 surviving tasks) | 2 |", "| tasks parsed | 6 |",
                 "| beyond the target | 1 |", "| **training records** | **5** |", "| text before the first field | 2 |",
                 "- generation template: `prompts/selfinstruct/list.txt`", "- `seeds/medical_seed_tasks.json`"):
        assert line in card
    assert "| records | 5 |" in (r / "stats/medinstruct/table.md").read_text()
    assert "Skipped: " in (r / "stats/medinstruct/verbs.md").read_text()
    log = (r / "logs/selfinstruct/generate_tasks.log").read_text()
    assert "round 1: requests 0-0" in log and "round 2: requests 1-1" in log
    training = json.loads((r / "data/medinstruct.json").read_text())
    assert len(training) == 5 and {"type", "topic", "view", "difficulty"} <= set(training[0])


# --- AlpaCare's own generation prompt (alpacare-official) -------------------------------------

ALPACARE_REPLY = """ Open Q&A
Topic: Cardiology
View: Patient
Difficulty: 2
Instruction: Why does my doctor want me to cut down on salt?
Input: <noinput>
###
5. Type: Summarization
Topic: Oncology
View: Clinician
Difficulty: 4
Instruction: Summarize the pathology report.
Input: Invasive ductal carcinoma, grade 2, margins clear.
###
6 . Type: Chat
"""


def test_a_reply_in_alpacares_layout_is_parsed():
    tasks, rejects = parse_replies([((0, 0), Response(text=ALPACARE_REPLY))], "list", layout="alpacare")
    assert [(t["type"], t["instruction"]) for t in tasks] == [("Open Q&A", "Why does my doctor want me to cut down on salt?"),
                                                             ("Summarization", "Summarize the pathology report.")]
    assert [r["reason"].split(":")[0] for r in rejects] == ["missing field(s)"]   # "6 . Type: Chat" and nothing more


def test_the_official_generation_prompt_is_built_as_alpacares_script_built_it(api, tmp_path, mirror, monkeypatch):
    import re

    from alpacare.selfinstruct import OFFICIAL_PROMPT, OFFICIAL_SYSTEM, sample_examples
    from conftest import mirror_from_snapshot

    base, root = mirror
    for ref in (OFFICIAL_PROMPT, OFFICIAL_SYSTEM):
        mirror_from_snapshot(root, ref)
    monkeypatch.setenv("ALPACARE_MIRROR", base)
    write_jsonl("seeds.jsonl", SEEDS)
    generate_tasks("seeds.jsonl", "raw.jsonl", "rejects.jsonl", "generation.json", teacher="gpt-4",
                   spec=dict(served(api), model="gpt-4"), settings={"cache": str(tmp_path / "cache.sqlite")}, model_dir=None,
                   prompting="list", run_seed=5, requests=1, examples_per_request=3, tasks_per_request=12,
                   sampling={"temperature": 1.0, "top_p": 1.0, "presence_penalty": 1.5, "max_tokens": 3072},
                   prompt_path="alpacare-official", system_path="alpacare-official")
    body = api.requests[0]["body"]
    system, user = body["messages"]
    assert system == {"role": "system", "content": "Your objective is to generate diverse medical-related tasks."}
    text = user["content"]
    assert text.startswith("Here are the requirements:\n1. Ensure that all tasks are related to the medical domain.")
    assert "Start each new task with '###'.\n\nList of 12 tasks:\n###\n1. Type: " in text
    assert text.endswith("\n###\n4. Type:") and body["stop"] == ["###\n16"]
    # the fake teacher echoes the prompt: its three examples come back in AlpaCare's layout and parse
    examples = sample_examples(SEEDS, 5, 0, 3)
    assert [t["instruction"] for t in read_jsonl("raw.jsonl")] == [
        re.sub(r"\s+", " ", e["instruction"]).strip().rstrip(":") for e in examples]
    summary = read_json("generation.json")
    assert summary["layout"] == "alpacare" and summary["prompt"].endswith("/prompt/instrcution_prompt.txt")
    assert summary["system_prompt"].endswith("/task_output_generation/task_generation.py")
