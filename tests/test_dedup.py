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


# --- exactness of the indexed filter against rouge-score itself ---------------------------------

import random
import subprocess
import sys

from alpacare.dedup import Deduper
from alpacare.rouge import f_measure, min_lcs

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def score(a, b):
    return SCORER.score(a, b)["rougeL"].fmeasure


def naive_keep_first(tasks, seeds, t):
    kept = []
    for x in tasks:
        if not any(score(s["instruction"], x["instruction"]) > t for s in seeds + kept):
            kept.append(x)
    return kept


def naive_drop_both(tasks, seeds, t):
    drop = {i for i, x in enumerate(tasks) if any(score(s["instruction"], x["instruction"]) > t for s in seeds)}
    for i, j in itertools.combinations(range(len(tasks)), 2):
        if score(tasks[i]["instruction"], tasks[j]["instruction"]) > t:
            drop |= {i, j}
    return [x for i, x in enumerate(tasks) if i not in drop]


def random_corpus(n=160, seed=0):
    """Short texts over a small vocabulary: many pairs near every threshold, empty texts too."""
    rng = random.Random(seed)
    vocab = "a b c d e f g h i j the of and patient dose".split()
    out = []
    for _ in range(n):
        words = [rng.choice(vocab[: rng.randint(3, len(vocab))]) for _ in range(rng.randint(0, 14))]
        out.append(" ".join(words) + rng.choice(["", ".", "?", "!"]))
    return out


BOUNDARY_LONG = "a b c d e f g h i j k l m"
BOUNDARY_SHORT = "a c e g i k m"  # a 7-token subsequence of 13 tokens


def test_boundary_case_is_above_threshold_as_in_rouge_score():
    assert score(BOUNDARY_LONG, BOUNDARY_SHORT) == 0.7000000000000001 > 0.7
    assert f_measure(7, 13, 7) == 0.7000000000000001 and min_lcs(13, 7, 0.7) == 7 and min_lcs(7, 13, 0.7) == 7
    for policy, kept in (("keep-first", 1), ("drop-both-members", 0)):
        tasks = [task(BOUNDARY_LONG), task(BOUNDARY_SHORT)]
        assert len(dedup(tasks, [], 0.7, policy)[0]) == kept
        assert len(dedup(tasks[::-1], [], 0.7, policy)[0]) == kept


@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.7, 0.9, 1.0])
def test_same_decisions_as_rouge_score_for_both_policies(threshold):
    texts = random_corpus() + [BOUNDARY_LONG, BOUNDARY_SHORT]
    seeds, tasks = [task(t) for t in texts[:12]], [task(t) for t in texts[12:]]
    assert dedup(tasks, seeds, threshold, "keep-first")[0] == naive_keep_first(tasks, seeds, threshold)
    assert dedup(tasks, seeds, threshold, "drop-both-members")[0] == naive_drop_both(tasks, seeds, threshold)


@pytest.mark.parametrize("policy", ["keep-first", "drop-both-members"])
def test_incremental_batches_equal_one_call(policy):
    texts = random_corpus(seed=1)
    seeds, tasks = [task(t) for t in texts[:10]], [task(t) for t in texts[10:]]
    kept, report = dedup(tasks, seeds, 0.7, policy)
    deduper = Deduper(seeds, 0.7, policy)
    for start in range(0, len(tasks), 37):  # later batches bring tokens the first one never had
        deduper.add(tasks[start : start + 37])
        assert deduper.kept_count() == len(dedup(tasks[: start + 37], seeds, 0.7, policy)[0])
    assert deduper.result() == (kept, report)


def test_report_names_the_best_match_and_counts():
    kept, report = dedup(TASKS, SEED, threshold=0.7, policy="keep-first", limit=1)
    assert [t["instruction"] for t in kept] == [TASKS[1]["instruction"]]
    assert report["beyond_target"] == 1 and report["kept"] == 1
    assert report["dropped_similar_to_seed"] == 1 and report["dropped_similar_to_task"] == 1
    assert report["dropped"][1]["text"] == TASKS[1]["instruction"]
    assert report["pairs_scored"] >= 2


def test_bench_runs_small_and_prints_the_headline_last(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "dedup.py"), "-n", "400", "--sample", "120"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "(identical to ours)" in result.stdout
    assert lines[-1].startswith("speed-up ") and "x over the naive loop" in lines[-1] and "projected to 52,000" in lines[-1]
