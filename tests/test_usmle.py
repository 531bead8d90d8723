"""medAlpaca's USMLE self-assessment: loading, option extraction, log-likelihood scoring on the
real tiny model, intervals and tables, and a real snakemake run of the stage."""

import csv
import json
import math
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml

from alpacare.config import ConfigError, validate
from alpacare.usmle import answers, questions, scores
from alpacare.usmle.plan import generators_by_method
from conftest import ROOT, copy_project

OPTIONS = {"A": "Pulmonary embolism", "B": "Aspirin", "C": "Aspirin and clopidogrel", "D": "Myocardial infarction",
           "E": "Pneumothorax"}


# --- option extraction ---------------------------------------------------------------------

@pytest.mark.parametrize("reply, expected", [
    ("The answer is (C)", "C"),
    ("The answer is C.", "C"),
    ("C: Aspirin and clopidogrel", "C"),
    ("c)", "C"),
    ("(c)", "C"),
    ("d", "D"),
    ("Answer: e", "E"),
    ("I think the answer is B. C would also be wrong because it adds bleeding risk.", "B"),
    ("Pneumothorax", "E"),
    ("myocardial infarction, most likely of the inferior wall", "D"),
    ("Aspirin and clopidogrel together", "C"),   # "Aspirin" alone is only inside the longer option
    ("the answer is a pulmonary embolism", "A"),  # "a" is an article here, and also option A's text
    ("I think B or C", None),
    ("A: Myocardial infarction", None),           # the label says A, the text is option D
    ("It is either A or B", None),
    ("Aspirin or pneumothorax", None),
    ("", None),
    ("   \n", None),
    ("None of these fits the picture.", None),
])
def test_the_option_a_reply_names(reply, expected):
    letter, how = answers.extract_option(reply, OPTIONS)
    assert letter == expected, how


def test_several_or_no_options_say_why():
    assert answers.extract_option("I think B or C", OPTIONS) == (None, "names several options (B, C)")
    assert answers.extract_option("", OPTIONS) == (None, "empty reply")
    assert answers.extract_option("A patient like this needs rest", OPTIONS) == (None, "names no option")


def test_a_primed_reply_is_read_with_its_prefix():
    assert answers.extract_option(" (C)", OPTIONS, prefix="The answer is")[0] == "C"
    assert answers.extract_option(" a pulmonary embolism", OPTIONS, prefix="The answer is")[0] == "A"
    assert answers.extract_option(" a.", OPTIONS, prefix="The answer is")[0] == "A"


def test_a_letter_that_is_not_an_option_is_ignored():
    assert answers.extract_option("F: none of the above", {"A": "x", "B": "y"})[0] is None


# --- loading ------------------------------------------------------------------------------

def official_fixture(folder, step_sizes=(4, 3, 3), images=None, solutions=None):
    """A small folder in the hub dataset's own layout: stepN.json ({no, question, options}),
    stepN_solutions.json ({no: letter}) and question_with_images.json ({"stepN": [no, ...]})."""
    images = images or {"step1": [2], "step2": [], "step3": [1, 3]}
    for step, size in enumerate(step_sizes, 1):
        qs = [{"no": n, "question": f"Step {step} question {n}?",
               "options": {"A": f"first {n}", "B": f"second {n}", "C": f"third {n}"}} for n in range(1, size + 1)]
        (folder / f"step{step}.json").write_text(json.dumps(qs))
        keys = {str(n): "abc"[n % 3] for n in range(1, size + 1)}
        keys.update((solutions or {}).get(step, {}))
        (folder / f"step{step}_solutions.json").write_text(json.dumps(keys))
    (folder / "question_with_images.json").write_text(json.dumps(images))
    return folder


def test_official_layout_drops_image_questions_and_counts_per_step(tmp_path):
    folder = official_fixture(tmp_path)
    kept, summary = questions.load_questions({"source": str(folder), "expected_counts": {"1": 3, "2": 3, "3": 1}}, tmp_path)
    assert [q["id"] for q in kept] == ["step1-1", "step1-3", "step1-4", "step2-1", "step2-2", "step2-3", "step3-2"]
    assert summary["steps"] == {"1": {"questions": 4, "with_images": 1, "bad": 0, "kept": 3},
                                "2": {"questions": 3, "with_images": 0, "bad": 0, "kept": 3},
                                "3": {"questions": 3, "with_images": 2, "bad": 0, "kept": 1}}
    first = kept[0]
    assert first == {"id": "step1-1", "step": "1", "question": "Step 1 question 1?",
                     "options": {"A": "first 1", "B": "second 1", "C": "third 1"}, "answer": "B"}


def test_step_counts_are_checked_against_the_expected_ones(tmp_path):
    folder = official_fixture(tmp_path)
    with pytest.raises(questions.QuestionError, match=r"step 1: 3 \(expected 92\), step 2: 3 \(expected 110\), step 3: 1 \(expected 122\)"):
        questions.load_questions({"source": str(folder), "expected_counts": questions.OFFICIAL_COUNTS}, tmp_path)


def test_bad_questions_are_named_with_their_id(tmp_path):
    folder = official_fixture(tmp_path, solutions={2: {"3": "F"}})
    step3 = json.loads((folder / "step3.json").read_text())
    step3[1]["options"] = {}
    (folder / "step3.json").write_text(json.dumps(step3))
    with pytest.raises(questions.QuestionError) as err:
        questions.load_questions({"source": str(folder)}, tmp_path)
    assert "2 bad question(s)" in str(err.value)
    assert "step2-3: answer key 'F' is not one of the options (A, B, C)" in str(err.value)
    assert "step3-2: no options" in str(err.value)
    kept, summary = questions.load_questions({"source": str(folder), "on_bad_question": "skip"}, tmp_path)
    assert [b["id"] for b in summary["bad_questions"]] == ["step2-3", "step3-2"]
    assert "step2-3" not in {q["id"] for q in kept} and summary["steps"]["2"]["bad"] == 1


def test_an_image_list_naming_unknown_questions_stops_the_load(tmp_path):
    folder = official_fixture(tmp_path, images={"step1": [0, 2], "step2": [], "step3": []})
    with pytest.raises(questions.QuestionError, match=r"step1 names question\(s\) 0, which step1.json does not have"):
        questions.load_questions({"source": str(folder)}, tmp_path)


def test_flat_records_through_a_field_mapping(tmp_path):
    rows = [{"qid": "x1", "exam": "Step 2", "stem": "Q1?", "choices": ["yes", "no"], "key": "b"},
            {"qid": "x2", "exam": "Step 2", "stem": "Q2?", "choices": ["yes", "no"], "key": "A", "figure": "ecg.png"}]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {"id": "qid", "step": "exam", "question": "stem", "options": "choices", "answer": "key", "image": "figure"}
    kept, summary = questions.load_questions({"source": str(path), "fields": fields}, tmp_path)
    assert kept == [{"id": "x1", "step": "2", "question": "Q1?", "options": {"A": "yes", "B": "no"}, "answer": "B"}]
    assert summary["steps"]["2"]["with_images"] == 1
    with pytest.raises(questions.QuestionError, match=r"record 0 has no field 'question'"):
        questions.load_questions({"source": str(path)}, tmp_path)


def test_a_hub_style_dataset_is_read_with_datasets(tmp_path):
    """Any dataset other than medAlpaca's goes through datasets.load_dataset (here a local one
    in the common MedQA-style schema: an options struct with empty letters, answer_idx)."""
    folder = tmp_path / "medqa-like"
    folder.mkdir()
    rows = [{"question": "Q1?", "options": {"A": "x", "B": "y", "C": None}, "answer_idx": "B"},
            {"question": "Q2?", "options": {"A": "x", "B": "y", "C": "z"}, "answer_idx": "C"}]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept, _ = questions.load_questions({"source": f"hub:{folder}", "split": "test", "fields": {"answer": "answer_idx"}}, tmp_path)
    assert [(q["id"], q["step"], q["options"], q["answer"]) for q in kept] == [
        ("0", "all", {"A": "x", "B": "y"}, "B"), ("1", "all", {"A": "x", "B": "y", "C": "z"}, "C")]


def test_the_projects_own_questions_load_cleanly():
    kept, summary = questions.load_questions({"source": str(ROOT / "data/usmle/questions.jsonl")}, ROOT)
    assert {s: c["kept"] for s, c in summary["steps"].items()} == {"1": 4, "2": 4, "3": 4}
    assert len({q["answer"] for q in kept}) == 5  # the key is not always the same letter


# --- templates and config ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["medalpaca", "plain"])
def test_shipped_templates_render(name):
    template = answers.load_template(ROOT / f"prompts/usmle/{name}.yaml")
    q = {"question": "Which vitamin?", "options": {"A": "Vitamin C", "B": "Vitamin D"}}
    prompt = answers.local_prompt(q, template)
    assert "Which vitamin?" in prompt and "Vitamin D" in prompt and "### Response:" in prompt
    assert len(answers.continuations(q, template, chat=False)) == 2


def test_a_broken_template_is_named(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("instruction: x\ninput: '{question}'\noption: '{letter}'\n")
    with pytest.raises(answers.TemplateError, match=r"t.yaml: missing key\(s\) answer_prefix, continuation"):
        answers.load_template(path)
    path.write_text("instruction: '{stem}'\ninput: ''\noption: '{letter}'\nanswer_prefix: ''\ncontinuation: '{text}'\n")
    with pytest.raises(answers.TemplateError, match="t.yaml: a placeholder cannot be filled"):
        answers.load_template(path)


def default_config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_log_likelihood_leaves_out_api_models_unless_asked_explicitly():
    config = default_config()
    config["llms"]["gpt"] = {"provider": "openai", "model": "gpt-4"}
    config["generators"]["gpt"] = {"llm": "gpt"}
    config["generators"]["official"] = {"import": {"medical-dozen": "https://example.org/x.json"}}
    config["usmle"]["generators"] = ["smollm2-base", "smollm2-chat", "gpt"]
    validate(config)
    assert generators_by_method(config) == {"generation": ["smollm2-base", "smollm2-chat", "gpt"],
                                            "loglik": ["smollm2-base", "smollm2-chat"]}
    config["usmle"]["methods"]["loglik"]["generators"] = ["smollm2-base", "gpt"]
    with pytest.raises(ConfigError, match=r"'usmle.methods.loglik.generators.1': log-likelihood needs a local model"):
        validate(config)
    del config["usmle"]["methods"]["loglik"]["generators"]
    config["usmle"]["generators"] = ["official"]
    with pytest.raises(ConfigError, match=r"'usmle.generators.0': generator 'official' only imports outputs"):
        validate(config)
    config["usmle"]["generators"] = ["nobody"]
    with pytest.raises(ConfigError, match=r"'usmle.generators.0' names generator 'nobody'"):
        validate(config)


def test_default_config_fills_the_methods():
    config = default_config()
    del config["usmle"]["methods"]
    validate(config)
    assert config["usmle"]["methods"] == {"generation": {"max_new_tokens": 32, "decoding": "greedy"}, "loglik": {"normalisation": "chars"}}
    assert config["usmle"]["published"] == "data/usmle/medalpaca_published.yaml"


# --- scoring ------------------------------------------------------------------------------

def test_wilson_interval_against_hand_computed_values():
    low, high = scores.wilson(5, 10)  # p = 0.5: centre 0.5, half-width z*sqrt(0.025 + z^2/400)/(1 + z^2/10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = scores.wilson(0, 10)  # upper bound z^2 / (n + z^2)
    assert low == 0.0 and math.isclose(high, 1.959964**2 / (10 + 1.959964**2), rel_tol=1e-6)
    assert all(math.isnan(x) for x in scores.wilson(0, 0))


def test_choose_normalises_and_treats_a_tie_as_no_answer():
    assert answers.choose([-6.0, -4.0], [6, 2], ["A", "B"])[0] == "A"  # -1.0 per char beats -2.0
    assert answers.choose([-6.0, -4.0], None, ["A", "B"])[0] == "B"
    assert answers.choose([-3.0, -3.0], None, ["A", "B"]) == (None, [-3.0, -3.0])


def test_loglik_matches_a_hand_computed_forward_pass(smollm2_dir, tmp_path, monkeypatch):
    """The stage's scores against log-probabilities summed by hand from one full forward pass
    over prompt + continuation (no cache, no batching), for every normalisation."""
    from alpacare.checkpoints import load_model
    from alpacare.stages.usmle import answer_by_loglik

    torch.set_num_threads(2)
    monkeypatch.chdir(tmp_path)  # the stage writes its ledger shard under results/ledger/
    q = {"id": "q1", "step": "1", "question": "Which vitamin deficiency causes scurvy?",
         "options": {"A": "Vitamin C", "B": "Vitamin D", "C": "Iron"}, "answer": "A"}
    (tmp_path / "q.jsonl").write_text(json.dumps(q) + "\n")
    template_path = ROOT / "prompts/usmle/medalpaca.yaml"
    template = answers.load_template(template_path)
    model, tokenizer = load_model(smollm2_dir)
    prompt_ids = tokenizer.encode(answers.local_prompt(q, template), add_special_tokens=False)
    by_hand = {}
    for letter, text in zip("ABC", answers.continuations(q, template, chat=False)):
        ids = tokenizer.encode(text, add_special_tokens=False)
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        total = sum(logprobs[len(prompt_ids) + j - 1, t].item() for j, t in enumerate(ids))
        by_hand[letter] = (total, len(text), len(ids))
    for normalisation, size in (("none", None), ("chars", 1), ("tokens", 2)):
        out = tmp_path / f"{normalisation}.jsonl"
        # one model call: the normalisation is applied to the cached log-probabilities
        answer_by_loglik(tmp_path / "q.jsonl", template_path, out, generator="smollm2", kind="alpaca",
                         spec={"provider": "local"}, settings={"cache": str(tmp_path / "cache.sqlite")},
                         model_dir=smollm2_dir, normalisation=normalisation)
        (row,) = [json.loads(line) for line in out.read_text().splitlines()]
        expected = {k: total / (n[size - 1] if size else 1) for k, (total, *n) in by_hand.items()}
        for letter in "ABC":
            assert row["logprobs"][letter] == pytest.approx(by_hand[letter][0], abs=2e-3)
            assert row["scores"][letter] == pytest.approx(expected[letter], abs=2e-3)
        assert row["prediction"] == max(expected, key=expected.get)
        assert row["correct"] == (row["prediction"] == "A") and row["unanswered"] is False


@pytest.fixture(scope="module")
def sp_llama(tmp_path_factory):
    from tiny_llama import build_sp_llama

    return build_sp_llama(tmp_path_factory.mktemp("sp") / "llama")


SCURVY = {"id": "q1", "step": "1", "question": "Which vitamin deficiency causes scurvy?",
          "options": {"A": "Vitamin C", "B": "Vitamin D", "C": "Iron"}, "answer": "A"}


@pytest.mark.parametrize("template_name", ["medalpaca", "plain"])
def test_options_are_tokenized_with_the_prompt_as_training_tokenized_them(sp_llama, template_name):
    """A sentencepiece (LLaMA) tokenizer: each option's continuation is the tail of prompt +
    continuation encoded once, as Stanford Alpaca's training encoded prompt + target."""
    from transformers import AutoTokenizer

    from alpacare.template import encode_continuation, encode_prompt

    tokenizer = AutoTokenizer.from_pretrained(sp_llama)
    template = answers.load_template(ROOT / f"prompts/usmle/{template_name}.yaml")
    prompt = answers.local_prompt(SCURVY, template)
    assert prompt.endswith("### Response:" + template["answer_prefix"])   # the target follows the marker directly
    apart_differs = False
    for text in answers.continuations(SCURVY, template, chat=False):
        prompt_ids, ids = encode_continuation(tokenizer, prompt, text)
        assert prompt_ids + ids == encode_prompt(tokenizer, prompt + text)
        assert prompt_ids[0] == tokenizer.bos_token_id and tokenizer.decode(ids).strip() == text.strip()
        apart_differs |= ids != tokenizer.encode(text, add_special_tokens=False)
    # "(A) Vitamin C" right after "### Response:" starts no new word: encoded on its own it gets "▁("
    assert apart_differs == (template_name == "plain")


def test_loglik_scores_the_tokens_training_saw_with_a_sentencepiece_tokenizer(sp_llama, tmp_path, monkeypatch):
    """The stage's log-probabilities against one forward pass over prompt + option encoded as
    one text: what a LLaMA-family model trained on "### Response:" + target saw."""
    from alpacare.checkpoints import load_model
    from alpacare.stages.usmle import answer_by_loglik
    from alpacare.template import encode_continuation

    torch.set_num_threads(2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "q.jsonl").write_text(json.dumps(SCURVY) + "\n")
    template_path = ROOT / "prompts/usmle/plain.yaml"
    template = answers.load_template(template_path)
    model, tokenizer = load_model(sp_llama)
    by_hand = {}
    for letter, text in zip("ABC", answers.continuations(SCURVY, template, chat=False)):
        prompt_ids, ids = encode_continuation(tokenizer, answers.local_prompt(SCURVY, template), text)
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([prompt_ids + ids])).logits[0].float(), dim=-1)
        by_hand[letter] = sum(logprobs[len(prompt_ids) + j - 1, t].item() for j, t in enumerate(ids))
    answer_by_loglik(tmp_path / "q.jsonl", template_path, tmp_path / "a.jsonl", generator="sp", kind="alpaca",
                     spec={"provider": "local"}, settings={"cache": str(tmp_path / "cache.sqlite")},
                     model_dir=sp_llama, normalisation="none")
    (row,) = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    for letter in "ABC":
        assert row["logprobs"][letter] == pytest.approx(by_hand[letter], abs=2e-3)


def test_report_tables_and_figure(tmp_path):
    from alpacare.stages.usmle import make_usmle_report

    rows = [{"id": f"q{n}", "step": step, "answer": "A", "prediction": p, "correct": p == "A", "unanswered": p is None}
            for n, (step, p) in enumerate([("1", "A"), ("1", None), ("2", "B"), ("2", "A"), ("3", "A")])]
    answers_file = tmp_path / "a.jsonl"
    answers_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths = [tmp_path / n for n in ("t.csv", "t.md", "f.png")]
    make_usmle_report({("generation", "mine"): answers_file}, ROOT / "data/usmle/medalpaca_published.yaml", *paths,
                      published_names={"mine": "MedAlpaca 13b"})
    table = list(csv.DictReader(paths[0].open()))
    assert [(r["step"], r["questions"], r["correct"], r["unanswered"], r["published"]) for r in table] == [
        ("1", "2", "1", "1", "0.4730"), ("2", "2", "1", "0", "0.4770"), ("3", "1", "1", "0", "0.6020"), ("all", "5", "3", "1", "")]
    assert table[0]["accuracy"] == "0.5000" and table[0]["ci_low"] == "0.0945"
    md = paths[1].read_text()
    assert "| generation | mine | 1 | 2 | 1 | 1 | 0.500 | 0.095-0.905 | 0.473 |" in md
    assert "| LLaMA 7b | 0.198 | 0.202 | 0.203 |" in md and "| MedAlpaca 30b | n/a | n/a | n/a |" in md
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no model named 'MedAlpaca 70b'"):
        make_usmle_report({("generation", "mine"): answers_file}, ROOT / "data/usmle/medalpaca_published.yaml", *paths,
                          published_names={"mine": "MedAlpaca 70b"})


def test_published_table_holds_medalpacas_numbers():
    published = scores.load_published(ROOT / "data/usmle/medalpaca_published.yaml")
    table = {r["name"]: (r["step1"], r["step2"], r["step3"]) for r in published["models"]}
    assert table["LLaMA 7b"] == (0.198, 0.202, 0.203)
    assert table["MedAlpaca 7b"] == (0.297, 0.312, 0.398)
    assert table["MedAlpaca 13b"] == (0.473, 0.477, 0.602)
    assert len(table) == 14 and published["source"].startswith("https://github.com/kbressem/medAlpaca/")


# --- the stage in the DAG -------------------------------------------------------------------

def snakemake(project, *args):
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=project, capture_output=True, text=True, timeout=1500)
    if result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.mark.workflow
def test_usmle_stage_runs_end_to_end_on_the_default_config(tmp_path):
    """The default config's usmle section on its untuned generators (the fine-tuned one only
    adds the training chain, which tests/test_workflow.py runs), both methods, then the report."""
    project = copy_project(tmp_path)
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["usmle"]["generators"] = ["smollm2-base", "smollm2-chat"]
    config["usmle"]["questions"]["limit_per_step"] = 1  # one question per step keeps the test cheap
    config["usmle"]["methods"]["generation"]["max_new_tokens"] = 12
    (project / "usmle.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/tables/usmle.csv", "results/tables/usmle.md", "results/figures/usmle.png"]
    snakemake(project, *targets, "--cores", "2", "--configfile", "usmle.yaml")
    r = project / "results"
    summary = json.loads((r / "usmle/questions_summary.json").read_text())
    asked = [json.loads(line) for line in (r / "usmle/questions.jsonl").read_text().splitlines()]
    assert len(asked) == summary["questions"] == 3 and summary["bad_questions"] == []
    assert {step: counts["kept"] for step, counts in summary["steps"].items()} == {"1": 1, "2": 1, "3": 1}
    for method in ("generation", "loglik"):
        for generator in ("smollm2-base", "smollm2-chat"):
            rows = [json.loads(line) for line in (r / f"usmle/{method}/{generator}.jsonl").read_text().splitlines()]
            assert [row["id"] for row in rows] == [q["id"] for q in asked]
            for row, q in zip(rows, asked):
                assert row["correct"] == (row["prediction"] == q["answer"]) and row["unanswered"] == (row["prediction"] is None)
            if method == "generation":  # each reply read once, as extract_option reads it
                prefix = answers.load_template(ROOT / "prompts/usmle/medalpaca.yaml")["answer_prefix"] if generator == "smollm2-base" else ""
                assert all((row["prediction"], row["how"]) == answers.extract_option(row["reply"], q["options"], prefix)
                           for row, q in zip(rows, asked))
            else:
                assert all(row["prediction"] in "ABCDE" and len(row["scores"]) == 5 for row in rows)
    table = list(csv.DictReader((r / "tables/usmle.csv").open()))
    assert len(table) == 2 * 2 * 4  # methods x generators x (3 steps + all)
    assert {(row["method"], row["generator"]) for row in table} == {
        (m, g) for m in ("generation", "loglik") for g in ("smollm2-base", "smollm2-chat")}
    assert all(float(row["ci_low"]) <= float(row["accuracy"]) <= float(row["ci_high"]) for row in table)
    assert (r / "figures/usmle.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the Snakemake report includes the figure and the table
    snakemake(project, *targets, "--configfile", "usmle.yaml", "--report", "report.zip")
    names = zipfile.ZipFile(project / "report.zip").namelist()
    assert any(n.endswith("usmle.png") for n in names) and any(n.endswith("usmle.csv") for n in names)

    # a changed normalisation reruns only log-likelihood scoring and the table
    config["usmle"]["methods"]["loglik"]["normalisation"] = "tokens"
    (project / "tokens.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(project, *targets, "-n", "--configfile", "tokens.yaml").stdout
    jobs = dry.split("Job stats:")[1].split("total")[0]
    assert "usmle_loglik" in jobs and "usmle_report" in jobs
    assert "usmle_generation" not in jobs and "usmle_questions" not in jobs


# --- medAlpaca's own protocol (eval/eval_usmle.py) --------------------------------------------

def test_the_medalpaca_template_asks_as_eval_usmle_did():
    template = answers.load_template(ROOT / "prompts/usmle/medalpaca.yaml")
    q = {"question": "A 54-year-old man has chest pain. What is the next step?", "options": {"A": "ECG", "B": "CT"}}
    # prompt_templates/medalpaca.json's primer and markers, eval_usmle.py's instruction, input and primed output
    assert answers.local_prompt(q, template) == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request."
        "\n\n### Instruction:\nAnswer this multiple choice question."
        "\n\n### Input:\nA 54-year-old man has chest pain. What is the next step?\nA: ECG\nB: CT"
        "\n\n### Response:\nThe Answer to the question is:")


@pytest.mark.parametrize("reply, accepted", [
    (" C: Aspirin and clopidogrel", True), ("B. Aspirin", True), ("A Pulmonary embolism", True), ("**D: MI**", True),
    ("C", False), ("c: aspirin", False), ("The answer is C", False), ("", False),
    ("(C) Aspirin", False),  # eval_usmle.py trims the "(" and its pattern refuses "C) Aspirin"
])
def test_medalpaca_retries_until_the_reply_begins_with_an_option(reply, accepted):
    assert answers.medalpaca_accepts(reply) is accepted


def test_medalpaca_seeds_come_from_the_question_and_the_try():
    q = {"id": "s1-7", "question": "Which vitamin deficiency causes scurvy?", "options": {"A": "C", "B": "D"}}
    moved = {**q, "id": "s2-99"}
    assert answers.question_seed(q, 0) == answers.question_seed(moved, 0) != answers.question_seed(q, 1)
    request = answers.generation_request(q, {"instruction": "{question}", "input": "{options}", "option": "{letter}: {text}",
                                             "answer_prefix": "", "continuation": ""},
                                         kind="alpaca", model="m", max_new_tokens=32, decoding="medalpaca", attempt=2)
    assert (request.temperature, request.top_p, request.top_k, request.max_tokens) == (0.4, 0.9, 50, 128)
    assert request.seed == answers.question_seed(q, 2)


def test_medalpaca_decoding_samples_up_to_five_tries_and_records_them(tmp_path, monkeypatch):
    from fakeapi import FakeAPI

    from alpacare.stages.usmle import answer_by_generation

    monkeypatch.chdir(tmp_path)
    qs = [{"id": "q1", "step": "1", "question": "Which vitamin deficiency causes scurvy?",
           "options": {"A": "Vitamin C", "B": "Vitamin D"}, "answer": "A"}]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    spec = {"provider": "openai", "model": "m", "base_url": None, "keyless": True}
    with FakeAPI() as api:  # echoes the prompt, which never begins with an option: every try is used
        spec["base_url"] = api.openai_url
        answer_by_generation(tmp_path / "q.jsonl", ROOT / "prompts/usmle/medalpaca.yaml", tmp_path / "out.jsonl",
                             generator="g", kind="alpaca", spec=spec, settings={"cache": str(tmp_path / "c.sqlite")},
                             decoding="medalpaca")
        bodies = [r["body"] for r in api.requests]
    assert len(bodies) == 5 and len({b["seed"] for b in bodies}) == 5
    assert all((b["temperature"], b["top_p"], b["top_k"], b["max_tokens"]) == (0.4, 0.9, 50, 128) for b in bodies)
    (row,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert row["decoding"] == "medalpaca" and row["tries"] == 5 and len(row["replies"]) == 5
    assert (row["prediction"], row["how"]) == answers.extract_option(row["reply"], qs[0]["options"],
                                                                     "\nThe Answer to the question is:")


def test_top_k_one_samples_the_greedy_token(smollm2_dir):
    from alpacare.llm import Request, make_provider

    provider = make_provider({"provider": "local"}, model_dir=smollm2_dir)
    prompt = "The capital of France is"
    greedy, = provider.complete_batch([Request(model=smollm2_dir, prompt=prompt, max_tokens=8)])
    sampled, = provider.complete_batch([Request(model=smollm2_dir, prompt=prompt, max_tokens=8, temperature=1.5,
                                                top_k=1, seed=3)])
    assert sampled.text == greedy.text
    # a request without top_k keeps the cache key it had before top_k existed
    assert "top_k" not in Request(model="m", prompt="p").as_dict()
