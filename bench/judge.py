"""The local log-prob judge: alpacare's scorer (each prompt prefilled once, in one batch, the
choices continuing from its cache) against the obvious way (one full forward pass per
prompt+choice). Same judge prompts, both orders; prints seconds, the ratio, and the largest
log-probability difference. Needs results/models/smollm2-135m."""

import argparse
import json
import time
from pathlib import Path

import torch

from alpacare.judge import build_requests
from alpacare.llm.local import LocalProvider, load_model, prompt_ids

ROOT = Path(__file__).resolve().parent.parent


def naive_scores(model, tokenizer, request):
    prompt = prompt_ids(tokenizer, request)
    scores = []
    for choice in request.choices:
        ids = prompt + tokenizer.encode(choice, add_special_tokens=False)
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits.float(), dim=-1)
        scores.append(sum(logprobs[0, j - 1, ids[j]].item() for j in range(len(prompt), len(ids))))
    return scores


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(ROOT / "results/models/smollm2-135m"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    items = [json.loads(line) for line in (ROOT / "testsets/medical_dozen.jsonl").read_text().splitlines()]
    model_out = [{**t, "output": "It depends; please see a doctor who can examine you and review your history."} for t in items]
    reference = [{**t, "output": f"{t['instruction']} In short: the usual causes, the warning signs, and when to seek care."} for t in items]
    requests = [r for _, r in build_requests(model_out, reference, judge_model=args.model, method="logprob", max_tokens=16)]
    provider = LocalProvider(args.model)
    model, tokenizer = load_model(args.model)
    with torch.inference_mode():
        start = time.perf_counter()
        naive = [naive_scores(model, tokenizer, r) for r in requests]
        naive_s = time.perf_counter() - start
        start = time.perf_counter()
        ours = [r.choice_logprobs for r in provider.complete_batch(requests)]
        ours_s = time.perf_counter() - start
    diff = max(abs(a - b) for x, y in zip(naive, ours) for a, b in zip(x, y))
    agree = sum((x[0] > x[1]) == (y[0] > y[1]) for x, y in zip(naive, ours))
    print(f"{len(requests)} judgments, 2 choices each")
    print(f"one forward per choice: {naive_s:.1f} s   shared prefill: {ours_s:.1f} s")
    print(f"max |logprob difference|: {diff:.2e}; same preference in {agree}/{len(requests)}")
    print(f"speed-up: {naive_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
