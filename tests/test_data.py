import pytest

from alpacare.data import to_alpaca
from alpacare.mixture import mix
from alpacare.outputs import imported_outputs
from alpacare.template import alpaca_prompt
from alpacare.testsets import normalize_testset
from alpacare.io import read_records
from conftest import reference_file


def test_medinstruct_test_normalizes_to_216_items():
    rows = normalize_testset(read_records(reference_file("MedInstruct-test.jsonl")), "MedInstruct-test.jsonl")
    assert len(rows) == 216
    assert {r["difficulty"] for r in rows} == {1, 2, 3, 4, 5}
    assert all(r["instruction"] and r["input"] == "" for r in rows)
    assert normalize_testset(read_records(reference_file("MedInstruct-test.jsonl")), "x", limit=5)[-1]["id"] == 4


@pytest.mark.parametrize("name", [
    "reference_outputs/gpt-4.medsi_output.jsonl",
    "reference_outputs/claude-2.medsi_output.jsonl",
    "reference_outputs/text-davinci-003.medsi_output.jsonl",
    "model_outputs/AlpaCare-7b.medinstruct.seed_0.json",   # a JSON list with `response`, not `output`
])
def test_official_outputs_import_onto_medinstruct_test(name):
    testset = normalize_testset(read_records(reference_file("MedInstruct-test.jsonl")), "MedInstruct-test")
    outputs = imported_outputs(read_records(reference_file(name)), testset, "official", name)
    assert [o["id"] for o in outputs] == [t["id"] for t in testset]
    assert all(o["output"].strip() and o["generator"] == "official" for o in outputs)


def test_import_names_missing_items():
    testset = [{"id": 7, "instruction": "Define sepsis.", "input": ""}]
    with pytest.raises(ValueError, match=r"outputs\.json: no output for 1 test item\(s\), ids \[7\]"):
        imported_outputs([{"instruction": "Other.", "output": "x"}], testset, "g", "outputs.json")


def test_alpaca_prompt_and_records():
    assert alpaca_prompt("Define sepsis.").endswith("### Instruction:\nDefine sepsis.\n\n### Response:")
    with_input = alpaca_prompt("Summarize.", "A 60-year-old man ...")
    assert with_input.endswith("### Input:\nA 60-year-old man ...\n\n### Response:")
    assert alpaca_prompt("Define sepsis.", "<noinput>") == alpaca_prompt("Define sepsis.")
    records = to_alpaca([{"instruction": "a", "input": "<noinput>", "output": " b "},
                         {"instruction": "c", "input": "d", "output": "  "}])
    assert records == [{"instruction": "a", "input": "", "output": "b"}]


def test_mix_caps_each_dataset_reproducibly():
    a = [{"n": i} for i in range(10)]
    b = [{"m": i} for i in range(4)]

    def parts(**extra):
        return [{"dataset": "a", "records": a, "max": 3, **extra}, {"dataset": "b", "records": b}]

    mixed, report = mix(parts(), run_seed=1)
    assert len(mixed) == 7 and mixed[3:] == b
    assert [r["n"] for r in mixed[:3]] == sorted(r["n"] for r in mixed[:3])  # the file's order kept
    assert [(r["dataset"], r["available"], r["taken"], r["max"]) for r in report] == [("a", 10, 3, 3), ("b", 4, 4, None)]
    assert mixed == mix(parts(), run_seed=1)[0] and mixed != mix(parts(), run_seed=2)[0]
    # a part's own seed wins over the run seed; its sample does not depend on its position
    assert mix(parts(seed=7), run_seed=1)[0][:3] == mix(parts(seed=7), run_seed=2)[0][:3]
    assert mix(parts()[::-1], run_seed=1)[0][4:] == mixed[:3]
