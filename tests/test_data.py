import pytest

from alpacare.data import to_alpaca
from alpacare.mixture import mix
from alpacare.outputs import cut_at_template_end, imported_outputs
from alpacare.stages.testsets import prepare_testset
from alpacare.template import alpaca_prompt
from alpacare.testsets import DOCTOR_INSTRUCTION, normalize_testset
from alpacare.io import read_jsonl, read_records, write_json
from conftest import reference_file

ICLINIQ = {"instruction": DOCTOR_INSTRUCTION, "fields": {"input": "input"}, "match": "input"}  # as in configs/paper.yaml


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
    with pytest.raises(ValueError, match=r"outputs\.json: no output for 1 test item\(s\) \(matched on instruction\), ids \[7\]"):
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


def icliniq_testset():
    return normalize_testset(read_records(reference_file("reference_outputs/gpt-4.iCliniq_output.jsonl")), "iCliniq", **ICLINIQ)


def test_icliniq_is_asked_with_the_doctor_instruction_and_the_question_as_input():
    testset = icliniq_testset()
    assert len(testset) == 1000 and len({t["input"] for t in testset}) == 1000
    assert all(t["instruction"] == DOCTOR_INSTRUCTION and t["input"] and t["match"] == t["input"] for t in testset)
    assert testset[0]["input"].startswith("Hello doctor,I had mumps")
    assert alpaca_prompt(testset[0]["instruction"], testset[0]["input"]).count("### Input:") == 1


@pytest.mark.parametrize("name", [
    "reference_outputs/gpt-4.iCliniq_output.jsonl",
    "reference_outputs/gpt-3.5-turbo.iCliniq_output.jsonl",
    "reference_outputs/text-davinci-003.iCliniq_output.jsonl",
    "reference_outputs/claude-2.iCliniq_output.jsonl",   # {prompt: "Human: <instruction>\n\n<question>\nAssistant:", response}
    "model_outputs/AlpaCare-7b.iCliniq.seed_0.json",     # the doctor instruction + the question as input
])
def test_icliniq_outputs_match_row_for_row(name):
    testset = icliniq_testset()
    rows = read_records(reference_file(name))
    outputs = imported_outputs(rows, testset, "official", name)
    assert [o["id"] for o in outputs] == [t["id"] for t in testset]
    assert [o["output"] for o in outputs] == [r.get("response", r.get("output")) for r in rows]


def test_alpacafarm_from_alpaca_evals_format(tmp_path):
    released = read_records(reference_file("model_outputs/AlpaCare-7b.alpaca_eval.seed_0.json"))
    # alpaca_eval's own file: instruction, output (text-davinci-003's), generator, dataset
    write_json(tmp_path / "alpaca_eval.json", [{"instruction": r["instruction"], "output": f"ref {n}",
                                                 "generator": "text_davinci_003", "dataset": "helpful_base"}
                                                for n, r in enumerate(released)])
    prepare_testset(tmp_path / "alpacafarm.jsonl", url=(tmp_path / "alpaca_eval.json").as_uri(), fields={"instruction": "instruction"})
    testset = read_jsonl(tmp_path / "alpacafarm.jsonl")
    assert len(testset) == 805 and [t["id"] for t in testset[:3]] == [0, 1, 2]
    outputs = imported_outputs(released, testset, "AlpaCare-7b", "seed_0.json")
    assert [o["output"] for o in outputs] == [r["response"] for r in released]
    references = imported_outputs(read_records(tmp_path / "alpaca_eval.json"), testset, "text-davinci-003", "alpaca_eval.json")
    assert references[804]["output"] == "ref 804"
    # AlpaCare's ChatDoctor and medAlpaca-7B AlpacaFarm files keep alpaca_eval's row (text-davinci-003's
    # `output`) and add the model's `response`: the model's answer is the response
    both = [{"dataset": "helpful_base", "instruction": r["instruction"], "output": f"ref {n}", "generator": "text_davinci_003",
             "id": n, "raw_output": "Below is an instruction...", "response": r["response"]} for n, r in enumerate(released)]
    assert [o["output"] for o in imported_outputs(both, testset, "chatdoctor-7b", "seed_0.json")] == [r["response"] for r in released]


def test_a_hub_dataset_is_read_with_datasets(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(f'{{"q": "question {n}", "level": "{n % 5 + 1}"}}\n' for n in range(7)))
    prepare_testset(tmp_path / "t.jsonl", hub={"name": "json", "data_files": str(path), "split": "train"}, limit=4,
                    fields={"instruction": "q", "difficulty": "level"})
    rows = read_jsonl(tmp_path / "t.jsonl")
    assert rows[3] == {"id": 3, "instruction": "question 3", "input": "", "match": "question 3", "difficulty": 4}


def test_bad_test_set_rows_are_named():
    with pytest.raises(ValueError, match=r"t\.json: row 1: no column 'q' \(mapped to 'instruction'\)"):
        normalize_testset([{"q": "a"}, {"question": "b"}], "t.json", fields={"instruction": "q"})
    with pytest.raises(ValueError, match=r"t\.json: row 0: difficulty must be a whole number, got 'hard'"):
        normalize_testset([{"instruction": "a", "difficulty": "hard"}], "t.json")
    with pytest.raises(ValueError, match=r"t\.json: row 1: id 3 repeats row 0"):
        normalize_testset([{"id": 3, "instruction": "a"}, {"id": 3, "instruction": "b"}], "t.json")
    with pytest.raises(ValueError, match=r"t\.json: row 0: items are matched on 'input', which is empty"):
        normalize_testset([{"input": ""}], "t.json", instruction=DOCTOR_INSTRUCTION, match="input")


@pytest.mark.parametrize("text,expected", [
    ("Rest and fluids.\n\n### Instruction:\nWhat is", "Rest and fluids."),
    ("Rest.\n### Input:\nmore", "Rest."),
    ("Rest.\n\n## Response: again", "Rest."),
    ("### Symptoms:\n- fever\n\nSee a doctor.", "### Symptoms:\n- fever\n\nSee a doctor."),   # a heading of its own stays
    ("  Plain answer. ", "Plain answer."),
])
def test_generated_outputs_are_cut_where_the_model_starts_a_new_block(text, expected):
    assert cut_at_template_end(text) == expected


def test_a_released_training_set_with_another_count_stops_the_job(mirror, monkeypatch, tmp_path):
    """A training set fetched like the released ones (through ALPACARE_MIRROR) is checked against
    the count its config states: MedInstruct-52k and Stanford Alpaca hold 52,002 records."""
    import json

    from alpacare.stages.dataset import build_dataset

    base, root = mirror
    served = root / "example.org" / "released" / "synthetic.json"
    served.parent.mkdir(parents=True, exist_ok=True)
    served.write_text(json.dumps([{"instruction": f"Task {n}", "input": "", "output": "Done."} for n in range(3)]))
    monkeypatch.setenv("ALPACARE_MIRROR", base)
    spec = {"url": "https://example.org/released/synthetic.json"}
    build_dataset(tmp_path / "ok.json", {**spec, "count": 3})
    assert len(json.loads((tmp_path / "ok.json").read_text())) == 3
    with pytest.raises(ValueError, match=r"synthetic.json: 3 records, but the config says this dataset has 52,002"):
        build_dataset(tmp_path / "bad.json", {**spec, "count": 52002})
    assert not (tmp_path / "bad.json").exists()
