"""Training throughput on CPU: alpacare's Trainer-based fine-tuning against the hand-written
loop it replaced (copied below from git history, commit ce0efce), on the same encoded
examples, model and global batch; plus the effect of length-grouped batching and of
padding-free batching. Each variant runs in its own process, so its peak RSS is its own.

tokens/s counts real tokens (prompt + response + EOS, no padding) over the training time
alone (model loading excluded). A tiny random-initialised Llama (tests/tiny_llama.py), no
downloads. On a GPU (1B-class Llama, bf16, MFU): bench/gpu_check.py.
Prints one line per variant; the last line is our Trainer's tokens/s over the old loop's."""

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_llama import RECORDS, build_tiny_llama  # noqa: E402

from alpacare.stages.finetune import resolve_run  # noqa: E402
from alpacare.train import IGNORE, encode_all  # noqa: E402

VARIANTS = ("loop", "trainer", "trainer-group-by-length", "trainer-padding-free")


def bench_records(n: int, seed: int = 0) -> list[dict]:
    """n examples of widely varying response length (1 to 12 repeats of a record's output)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        r = RECORDS[i % len(RECORDS)]
        rows.append({**r, "output": " ".join([r["output"]] * rng.randint(1, 12))})
    return rows


# --- the hand-written loop this project used before (ce0efce:alpacare/train.py), kept as the baseline
def old_collate(batch, pad_id):
    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.tensor([b["input_ids"] + [pad_id] * (width - len(b["input_ids"])) for b in batch])
    labels = torch.tensor([b["labels"] + [IGNORE] * (width - len(b["labels"])) for b in batch])
    mask = torch.tensor([[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch])
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def old_loop(model, examples, pad_id, hp):
    from transformers import get_cosine_schedule_with_warmup

    micro = hp["micro_batch_size"]
    accumulation = max(1, hp["batch_size"] // micro)
    total_steps = math.ceil(len(examples) / (micro * accumulation)) * hp["epochs"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=hp["lr"], weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(hp["warmup_ratio"] * total_steps), total_steps)
    rng = random.Random(hp["seed"])
    model.train()
    for _ in range(hp["epochs"]):
        order = list(range(len(examples)))
        rng.shuffle(order)
        batches = [order[i: i + micro] for i in range(0, len(order), micro)]
        for first in range(0, len(batches), accumulation):
            group = batches[first: first + accumulation]
            n_tokens = sum(sum(label != IGNORE for label in examples[i]["labels"][1:]) for b in group for i in b)
            for b in group:
                batch = old_collate([examples[i] for i in b], pad_id)
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = torch.nn.functional.cross_entropy(
                    logits[:, :-1].float().reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                    ignore_index=IGNORE, reduction="sum") / n_tokens
                loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
# --- end of the old loop


def run_variant(variant: str, model_dir: str, n: int, hp: dict) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alpacare import train

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    records = bench_records(n)
    examples, _ = encode_all(tokenizer, records, hp["max_length"])
    tokens = sum(len(e["input_ids"]) for e in examples) * hp["epochs"]
    if variant == "loop":
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        torch.manual_seed(hp["seed"])
        start = time.perf_counter()
        old_loop(model, examples, train.pad_id(tokenizer), hp)
        seconds = time.perf_counter() - start
    else:
        with tempfile.TemporaryDirectory() as work:
            hp_run = {**{k: hp[k] for k in ("method", "epochs", "lr", "batch_size", "max_length", "warmup_ratio", "seed")},
                      "group_by_length": variant == "trainer-group-by-length"}
            runtime = {"gpus": 0, "micro_batch_size": hp["micro_batch_size"], "save_minutes": 10**6,
                       "padding_free": variant == "trainer-padding-free"}
            run = resolve_run(hp_run, runtime, 1, model_dir, Path(work))
            Path(run["data"]).write_text(json.dumps(records))
            state = train.run(run)
            seconds = state["train_runtime_metrics"]["train_runtime"]
    return {"variant": variant, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--variant", choices=VARIANTS, help="run one variant in this process (internal)")
    parser.add_argument("--model", help="internal: the model directory")
    args = parser.parse_args()
    torch.set_num_threads(2)
    hp = {"method": "full", "epochs": args.epochs, "lr": 1e-3, "batch_size": 16, "micro_batch_size": 4,
          "max_length": 256, "warmup_ratio": 0.03, "seed": 0}
    if args.variant:
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(run_variant(args.variant, args.model, args.examples, hp)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_llama(Path(tmp) / "llama", layers=4, hidden=256)
        results = {}
        for _ in range(args.rounds):  # interleaved, best of rounds: a shared machine's load hits all alike
            for variant in VARIANTS:
                out = subprocess.run([sys.executable, __file__, "--variant", variant, "--model", model_dir,
                                      "--examples", str(args.examples), "--epochs", str(args.epochs)],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if variant not in results or r["seconds"] < results[variant]["seconds"]:
                    results[variant] = r
    loop = results["loop"]["tokens_per_s"]
    print(f"tiny Llama (4 layers, hidden 256), {args.examples} examples x {args.epochs} epoch(s), "
          f"global batch {hp['batch_size']} = {hp['micro_batch_size']} x {hp['batch_size'] // hp['micro_batch_size']}, "
          f"fp32 on CPU ({torch.get_num_threads()} threads), best of {args.rounds} interleaved rounds")
    for r in results.values():
        print(f"{r['variant']:26s} {r['tokens_per_s']:9.0f} tokens/s  {r['seconds']:7.2f} s  "
              f"peak RSS {r['peak_rss_mb']:6.0f} MB  ({r['tokens_per_s'] / loop:.2f}x the old loop)")
    print(f"{results['trainer']['tokens_per_s'] / loop:.2f}x")


if __name__ == "__main__":
    main()
