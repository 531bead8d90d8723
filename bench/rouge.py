"""Self-instruct's ROUGE-L filter: alpacare.rouge against the rouge-score package (the
definition), on the same candidate pool, with the same keep-first decisions checked.
Candidates are seed instructions with words shuffled and dropped, so many pairs are close."""

import argparse
import json
import random
import time
from pathlib import Path

from rouge_score import rouge_scorer

from alpacare.dedup import dedup

ROOT = Path(__file__).resolve().parent.parent


def candidates(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    base = [s["instruction"] for s in json.loads((ROOT / "seeds/medical_seed_tasks.json").read_text())]
    out = []
    for _ in range(n):
        words = rng.choice(base).split()
        words = [w for w in words if rng.random() > 0.25]
        if rng.random() < 0.5:
            rng.shuffle(words)
        out.append(" ".join(words + rng.sample(base[0].split(), 3)))
    return out


def keep_first_with_rouge_score(texts: list[str], threshold: float) -> list[int]:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept: list[int] = []
    for i, text in enumerate(texts):
        if all(scorer.score(texts[j], text)["rougeL"].fmeasure <= threshold for j in kept):
            kept.append(i)
    return kept


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1500)
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()
    texts = candidates(args.n)
    tasks = [{"instruction": t} for t in texts]

    start = time.perf_counter()
    kept, _ = dedup(tasks, [], args.threshold, "keep-first")
    ours = time.perf_counter() - start

    start = time.perf_counter()
    expected = keep_first_with_rouge_score(texts, args.threshold)
    baseline = time.perf_counter() - start

    assert [t["instruction"] for t in kept] == [texts[i] for i in expected], "decisions differ from rouge-score"
    print(f"{args.n} candidates, {len(expected)} kept by both (threshold {args.threshold})")
    print(f"rouge-score: {baseline:.2f} s   alpacare.rouge: {ours:.3f} s")
    print(f"speed-up: {baseline / ours:.1f}x")


if __name__ == "__main__":
    main()
