"""The GPU path checked on a GPU machine in a few minutes (torch, transformers, accelerate and
peft installed; no network, no vLLM). Run it where a GPU is lent and put its lines in the note:

    python bench/gpu_check.py            # about 3-5 minutes on one H100/H200-class GPU
    bench/gpu_wheels.sh run              # the same on a node whose packages are too old (README)
    python bench/gpu_check.py --tiny --cpu   # seconds: the smoke test CI runs (tests/test_gpu_check.py)

1. train: a randomly initialised ~1.1B Llama (built from a config, no download; the tiny test
   tokenizer, a 32,000-word embedding) trained for a few hundred steps by the project's own
   trainer (alpacare.train.run) in the precision the GPU gets (bf16 + tf32 from Ampere on):
   tokens/s, MFU (6 x parameters FLOPs per token over the GPU's dense bf16 peak), peak GPU
   memory, the loss at the first and last step.
   precision: the first (up to 40) steps again in the GPU's precision and in fp32: the
   largest relative difference between the two loss curves.
2. generate: the trained model on Alpaca prompts, one batched greedy decode (alpacare's
   LocalProvider) against one prompt at a time: tokens/s of each, and how many of the
   outputs differ (bf16 sums in another order when the batch shape changes).
3. With two GPUs or more (skipped, and said so, on one): fsdp, two FSDP processes on an
   uneven split (9 examples, micro-batch 2) against one GPU, with sharded checkpoints every
   step and a resume from them; split, a model spread over two GPUs by device_map decoding a
   batch whose rows finish at different steps.
Every line is `phase: measurement`; the last says how long it all took."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # alpacare from this checkout, installed or not

from tiny_llama import RECORDS, build_tiny_llama  # noqa: E402

from alpacare import hardware, template, train  # noqa: E402
from alpacare.llm import Request  # noqa: E402
from alpacare.llm.local import LocalProvider  # noqa: E402
from alpacare.stages.finetune import launch, prepare, resolve_run  # noqa: E402
from alpacare.stages.generate import ALPACA_STOPS  # noqa: E402

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "V100": 125.0}
LLAMA_1B = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048)


def say(phase: str, text: str) -> None:
    print(f"{phase}: {text}", flush=True)


def records(n: int, repeat: int) -> list[dict]:
    """n Alpaca records whose responses repeat a record's answer `repeat` times (long examples)."""
    return [{**r, "output": " ".join([r["output"]] * repeat)} for r in (RECORDS[i % len(RECORDS)] for i in range(n))]


def build_model(out: Path, tiny: bool, device: str) -> tuple[str, int]:
    """The model directory (tiny: tests/tiny_llama.py's; else a random ~1.1B Llama with the
    tiny tokenizer) and its parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = build_tiny_llama(out, layers=2, hidden=64)
    if not tiny:
        config = LlamaConfig(**LLAMA_1B, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
        torch.manual_seed(0)
        with torch.device(device):  # initialising 1.1B parameters on a CPU alone takes a minute
            model = LlamaForCausalLM(config)
        model.save_pretrained(path)
        del model
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).parameters())
    return path, params


def train_once(model_dir: str, work: Path, args, steps: int, fp32: bool = False) -> tuple[dict, dict]:
    """One training run of `steps` steps on the same data and seed: (run, final state). fp32:
    in float32 whatever the GPU (the reference the 16-bit run is compared with)."""
    hp = {"method": "full", "epochs": 1, "lr": 3e-4, "batch_size": args.batch, "max_length": args.max_length,
          "warmup_ratio": 0.03, "seed": 0}
    run = resolve_run(hp, {"gpus": 0 if args.cpu else 1, "micro_batch_size": args.batch, "save_minutes": 10**6,
                           "progress_seconds": 30}, 1, model_dir, work)
    if fp32:
        run["runtime"].update(precision="fp32", tf32=False)
    data = Path(run["data"])
    data.parent.mkdir(parents=True)
    data.write_text(json.dumps(records(steps * args.batch, repeat=args.repeat)))
    if torch.cuda.is_available() and not args.cpu:
        torch.cuda.reset_peak_memory_stats()
    return run, train.run(run)


def train_phase(model_dir: str, params: int, work: Path, args) -> str:
    run, state = train_once(model_dir, work, args, args.steps)
    data = Path(run["data"])
    hp = run["hp"]
    seconds = state["train_runtime_metrics"]["train_runtime"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    examples, _ = train.encode_all(tokenizer, json.loads(data.read_text()), hp["max_length"])
    tokens = sum(len(e["input_ids"]) for e in examples)
    rt = run["runtime"]
    say("train", f"{params / 1e9:.2f}B Llama" if params > 1e8 else f"{params / 1e6:.2f}M-parameter Llama")
    say("train", f"{state['steps']} steps of {args.batch} x <= {args.max_length} tokens, "
                 f"{rt['precision']}{' + tf32' if rt['tf32'] else ''} on {hardware.describe() if rt['gpu'] else 'CPU'}")
    say("train", f"{tokens / seconds:,.0f} tokens/s ({tokens:,} tokens in {seconds:.1f} s)")
    name = torch.cuda.get_device_name() if rt["gpu"] else ""
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    say("train", f"MFU {6 * params * tokens / seconds / (peak * 1e12):.1%} of {peak:g} TFLOPS" if peak
        else "MFU n/a (no known bf16 peak for this device)")
    if rt["gpu"]:
        say("train", f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    say("train", f"loss first {state['log'][0]['loss']:.4f}, last {state['log'][-1]['loss']:.4f}")
    trained = Path(run["work_dir"]) / train.TRAINED_DIR
    tokenizer.save_pretrained(trained)
    return str(trained)


def precision_phase(model_dir: str, work: Path, args) -> None:
    """The first steps in the GPU's precision (bf16 from Ampere on) against float32: the loss
    curves should agree to a few parts in a thousand (a CPU compares fp32 with itself)."""
    steps = min(args.steps, 40)
    curves = {}
    for fp32 in (False, True):
        run, state = train_once(model_dir, work / f"fp32-{fp32}", args, steps, fp32=fp32)
        curves[run["runtime"]["precision"] + (" (reference)" if fp32 else "")] = [h["loss"] for h in state["log"]]
        free_memory()
    (low, low_curve), (_, reference) = curves.items()
    worst = max(abs(a - b) / max(abs(b), 1e-9) for a, b in zip(low_curve, reference))
    say("precision", f"{low} against fp32 over {len(reference)} steps: last loss {low_curve[-1]:.4f} vs {reference[-1]:.4f}, "
                     f"largest relative difference {worst:.2e}")


def generate_phase(model_dir: str, args) -> None:
    items = [json.loads(line) for line in (ROOT / "testsets/medical_dozen.jsonl").read_text().splitlines()]
    prompts = [template.alpaca_prompt(f"{t['instruction']} (case {n})", t["input"])
               for n in range(args.copies) for t in items]
    requests = [Request(model=model_dir, prompt=p, max_tokens=args.new_tokens, temperature=0.0, stop=ALPACA_STOPS)
                for p in prompts]
    provider = LocalProvider(model_dir, progress_seconds=10**6)
    provider.complete_batch(requests[:1])  # load and warm up, outside both timings
    start = time.perf_counter()
    single = [provider.complete_batch([r])[0] for r in requests]
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = provider.complete_batch(requests)
    batched_s = time.perf_counter() - start
    differ = sum(a.text != b.text for a, b in zip(single, batched))
    tokens = sum(r.output_tokens for r in batched)
    say("generate", f"{len(requests)} prompts, greedy, up to {args.new_tokens} new tokens, {hardware.precision()}")
    say("generate", f"one at a time {sum(r.output_tokens for r in single) / single_s:,.0f} tokens/s, "
                    f"batched {tokens / batched_s:,.0f} tokens/s ({single_s / batched_s:.1f}x)")
    say("generate", f"{differ} of {len(requests)} outputs differ between batched and one at a time")


def fsdp_phase(tiny_dir: str, work: Path) -> None:
    """Two FSDP processes on an uneven split against one GPU, sharded checkpoints, and a resume."""
    data = work / "nine.json"
    data.write_text(json.dumps(RECORDS + [{"instruction": "Name a symptom of a cold.", "input": "",
                                           "output": "A runny nose."}]))
    hp = {"method": "full", "epochs": 2, "lr": 3e-3, "batch_size": 4, "max_length": 96, "warmup_ratio": 0.0, "seed": 7}
    parts = [{"dataset": "nine", "path": str(data)}]
    curves = {}
    for gpus in (1, 2):
        run, _ = prepare(parts, tiny_dir, work / f"fsdp{gpus}", hp, {"gpus": gpus, "micro_batch_size": 2,
                                                                      "save_steps": 1}, None)
        if gpus == 1:
            train.run(run)
        else:
            launch(Path(run["work_dir"]) / "run.json")
        curves[gpus] = [h["loss"] for h in json.loads((Path(run["work_dir"]) / "trained/train_state.json")
                                                       .read_text())["log"]]
    same = max(abs(a - b) for a, b in zip(curves[1], curves[2]))
    say("fsdp", f"9 examples at micro-batch 2 on 2 GPUs finished, {len(curves[2])} steps; largest loss difference "
                f"from 1 GPU {same:.2e}")
    work2 = work / "fsdp2.resume"
    shards = sorted(p.name for p in (work2 / train.STEPS_DIR).rglob("*.distcp"))
    say("fsdp", f"last checkpoint: {len(shards)} shard files ({', '.join(shards)}), "
                f"model.safetensors there: {any((work2 / train.STEPS_DIR).rglob('model.safetensors'))}")
    before = json.loads((work2 / "trained/train_state.json").read_text())
    shutil.rmtree(work2 / train.TRAINED_DIR)
    launch(work2 / "run.json")  # resumes from the last sharded checkpoint
    after = json.loads((work2 / "trained/train_state.json").read_text())
    say("fsdp", f"resumed from step {after['resumed_from_step']}: last loss {after['log'][-1]['loss']:.6f} "
                f"(uninterrupted {before['log'][-1]['loss']:.6f})")


def split_phase(tiny_dir: str) -> None:
    """A model over two GPUs (device_map), rows finishing at different steps."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alpacare.llm.local import _Decoder

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=hardware.dtype(), device_map="balanced").eval()
    devices = sorted({str(p.device) for p in model.parameters()})
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    requests = [Request(model=tiny_dir, prompt=template.alpaca_prompt(r["instruction"]), max_tokens=2 + 3 * n)
                for n, r in enumerate(RECORDS)]
    with torch.inference_mode():
        out = _Decoder(model, tokenizer, requests, progress_seconds=10**6).run()
    say("split", f"layers on {', '.join(devices)}: {len(out)} rows decoded, lengths {[r.output_tokens for r in out]}")


def free_memory() -> None:
    """Let the next phase's processes have the GPUs: drop the loaded model and the allocator's cache."""
    import gc

    from alpacare import checkpoints

    checkpoints._MODELS.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny test Llama and a few steps (a smoke test)")
    parser.add_argument("--cpu", action="store_true", help="train and generate on the CPU even where CUDA is present")
    parser.add_argument("--steps", type=int, help="optimizer steps (default 300; --tiny 4)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.cpu:
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run with --tiny --cpu for the smoke test")
    size = dict(steps=4, batch=2, max_length=96, repeat=2, copies=1, new_tokens=8) if args.tiny else \
        dict(steps=300, batch=8, max_length=1024, repeat=110, copies=3, new_tokens=64)
    for k, v in size.items():
        setattr(args, k, getattr(args, k, None) or v)
    started = time.monotonic()
    # below a floor the run fails deep in training with a raw TypeError: say which package, first
    from alpacare.versions import check_floors

    check_floors(["torch", "transformers", "accelerate", "peft", "pyrate-limiter"])
    say("versions", f"torch {torch.__version__}, transformers {__import__('transformers').__version__}, "
                    f"accelerate {__import__('accelerate').__version__}, peft {__import__('peft').__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        device = "cpu" if args.cpu else "cuda"
        model_dir, params = build_model(scratch / "model", args.tiny, device)
        trained = train_phase(model_dir, params, scratch / "train", args)
        free_memory()
        precision_phase(model_dir, scratch / "precision", args)
        generate_phase(trained, args)
        free_memory()
        if not args.cpu and hardware.visible_gpus() >= 2:
            tiny = build_tiny_llama(scratch / "tiny")
            fsdp_phase(tiny, scratch)
            split_phase(tiny)
        else:
            say("fsdp", "skipped: needs 2 GPUs")
            say("split", "skipped: needs 2 GPUs")
    say("done", f"{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
