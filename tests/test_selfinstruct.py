from alpacare.llm import Response
from alpacare.selfinstruct import build_requests, parse_replies, parse_task, sample_examples
from alpacare.seeds import load_seeds
from conftest import ROOT

SEEDS = load_seeds([ROOT / "seeds" / "medical_seed_tasks.json"])

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
                       tasks_per_request=12, sampling=sampling)
    b = build_requests(SEEDS, model="m", prompting="list", run_seed=1, requests=5, examples_per_request=3,
                       tasks_per_request=12, sampling=sampling)
    assert [r for _, r in a] == [r for _, r in b][:3]  # asking for more never changes earlier requests
    assert len({r.messages for _, r in a}) == 3
    assert a[0][1].stop == ("### 16",) and a[0][1].presence_penalty == 1.5
    assert sample_examples(SEEDS, 1, 0, 3) != sample_examples(SEEDS, 2, 0, 3)


def test_fields_requests_share_a_prompt_but_not_a_seed():
    tagged = build_requests(SEEDS, model="m", prompting="fields", run_seed=1, requests=2, examples_per_request=3,
                            tasks_per_request=4, sampling={"temperature": 0.7, "top_p": 0.9})
    assert len(tagged) == 8
    first = [r for (req, _), r in tagged if req == 0]
    assert len({r.prompt for r in first}) == 1 and len({r.seed for r in first}) == 4
    assert [name for name, _ in first[0].fields] == ["Type", "Topic", "View", "Difficulty", "Instruction", "Input"]
