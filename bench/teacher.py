"""How to ask a small local teacher for tasks: the paper's `list` prompting (one chat request,
numbered ### blocks) against `fields` (constrained field-by-field decoding), on the bundled
SmolLM2-135M-Instruct. Prints valid tasks and seconds for each, and the ratio of valid tasks
per second. Needs results/models/smollm2-135m (run `snakemake results/models/smollm2-135m`)."""

import argparse
import time
from pathlib import Path

import torch

from alpacare.llm import LLM
from alpacare.llm.local import LocalProvider
from alpacare.seeds import load_seeds
from alpacare.selfinstruct import build_requests, parse_replies

ROOT = Path(__file__).resolve().parent.parent


def run(llm, model, seeds, prompting, requests, sampling):
    tagged = build_requests(seeds, model=model, prompting=prompting, run_seed=7, requests=requests,
                            examples_per_request=3, tasks_per_request=12, sampling=sampling)
    start = time.perf_counter()
    responses = llm.run([r for _, r in tagged])
    seconds = time.perf_counter() - start
    tasks, rejects = parse_replies(list(zip([t for t, _ in tagged], responses)), prompting)
    return len(tasks), len(rejects), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(ROOT / "results/models/smollm2-135m"))
    parser.add_argument("--requests", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    seeds = load_seeds([ROOT / "seeds/medical_seed_tasks.json"])
    llm = LLM(LocalProvider(args.model), batch_size=64)
    sampling = {"temperature": 0.7, "top_p": 0.9, "presence_penalty": 0.0}
    results = {
        "list": run(llm, args.model, seeds, "list", args.requests, {**sampling, "max_tokens": 1024}),
        "fields": run(llm, args.model, seeds, "fields", args.requests, sampling),
    }
    for mode, (valid, rejected, seconds) in results.items():
        print(f"{mode:6s}: {valid:3d} valid, {rejected:3d} rejected in {seconds:6.1f} s = {valid / seconds:.3f} valid tasks/s")
    (lv, _, ls), (fv, _, fs) = results["list"], results["fields"]
    print(f"fields/list valid tasks per second: {(fv / fs) / max(lv / ls, 1e-9):.1f}x" if lv else "list prompting: no valid task")


if __name__ == "__main__":
    main()
