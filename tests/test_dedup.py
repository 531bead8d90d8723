import itertools
import json

import pytest
from rouge_score import rouge_scorer

from alpacare.dedup import dedup
from alpacare.rouge import Tokens, rouge_l
from conftest import REFERENCE, ROOT


def texts():
    seeds = json.loads((ROOT / "seeds" / "medical_seed_tasks.json").read_text())
    out = [s["instruction"] for s in seeds] + [s["input"] for s in seeds]
    if (REFERENCE / "med_seed.json").exists():
        out += [s["instruction"] for s in json.loads((REFERENCE / "med_seed.json").read_text())][:80]
    return out + ["", "!!!", "Fever, fever; FEVER.", "fever"]


def test_rouge_l_equals_rouge_score_on_every_pair():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    items = texts()
    tokens = [Tokens(t) for t in items]
    for i, j in itertools.combinations(range(len(items)), 2):
        expected = scorer.score(items[i], items[j])["rougeL"].fmeasure
        assert rouge_l(tokens[i], tokens[j]) == pytest.approx(expected, abs=1e-12), (items[i], items[j])


def task(instruction):
    return {"instruction": instruction, "input": "<noinput>"}


SEED = [{"instruction": "Explain the mechanism of action of metformin in type 2 diabetes."}]
TASKS = [
    task("Explain the mechanism of action of metformin in type 2 diabetes mellitus."),  # near a seed
    task("List three warning signs of a stroke that a caregiver should know."),
    task("List the three warning signs of a stroke that caregivers should know."),  # near the one above
    task("Describe how asthma is diagnosed in children."),
]


def test_keep_first_drops_seed_matches_and_later_duplicates():
    kept, report = dedup(TASKS, SEED, threshold=0.7, policy="keep-first")
    assert [t["instruction"] for t in kept] == [TASKS[1]["instruction"], TASKS[3]["instruction"]]
    assert [d["similar_to"] for d in report["dropped"]] == ["seed", "task"]
    assert report["candidates"] == 4 and report["kept"] == 2
    assert all(d["rouge_l"] > 0.7 for d in report["dropped"])


def test_drop_both_members_drops_the_pair():
    kept, report = dedup(TASKS, SEED, threshold=0.7, policy="drop-both-members")
    assert [t["instruction"] for t in kept] == [TASKS[3]["instruction"]]
    assert report["kept"] == 1


def test_threshold_is_strict():
    same = [task("a b c d"), task("a b c d")]
    assert len(dedup(same, [], threshold=1.0)[0]) == 2  # F1 == 1.0 is not > 1.0
    assert len(dedup(same, [], threshold=0.99)[0]) == 1


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown dedup policy 'drop-all'"):
        dedup(TASKS, SEED, policy="drop-all")
