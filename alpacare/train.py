"""Supervised fine-tuning in the Alpaca recipe: prompt tokens masked from the loss, EOS
appended, AdamW with a cosine schedule and warmup, gradient accumulation up to the global
batch. Methods: full, lora (medAlpaca: r 8, alpha 16, dropout 0.1, q/v projections) and
lora-8bit (8-bit base weights; needs a GPU and bitsandbytes)."""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path

import torch

from .template import alpaca_prompt

IGNORE = -100


def tokenize_example(tokenizer, record: dict, max_length: int) -> dict:
    prompt = tokenizer.encode(alpaca_prompt(record["instruction"], record.get("input", "")), add_special_tokens=False)
    target = tokenizer.encode(record["output"], add_special_tokens=False) + [tokenizer.eos_token_id]
    ids = (prompt + target)[:max_length]
    labels = ([IGNORE] * len(prompt) + target)[:max_length]
    return {"input_ids": ids, "labels": labels}


def collate(batch: list[dict], pad_id: int) -> dict:
    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.tensor([b["input_ids"] + [pad_id] * (width - len(b["input_ids"])) for b in batch])
    labels = torch.tensor([b["labels"] + [IGNORE] * (width - len(b["labels"])) for b in batch])
    mask = torch.tensor([[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch])
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def load_for_training(backbone_dir: str, method: str, lora: dict):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    kwargs = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if method == "lora-8bit":
        if not cuda:
            raise RuntimeError("method lora-8bit needs a CUDA GPU (bitsandbytes 8-bit weights); use lora on CPU")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    model = AutoModelForCausalLM.from_pretrained(backbone_dir, **kwargs)
    if not method.startswith("lora"):
        return model.to("cuda" if cuda else "cpu"), tokenizer
    from peft import LoraConfig, get_peft_model

    if method == "lora-8bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    return model.to("cuda" if cuda and method == "lora" else model.device), tokenizer


def finetune(records: list[dict], backbone_dir: str, out_dir: str | Path, hp: dict, log=print) -> dict:
    """Train and save an HF checkpoint (LoRA weights merged; the adapter kept in adapter/)."""
    torch.manual_seed(hp["seed"])
    model, tokenizer = load_for_training(backbone_dir, hp["method"], hp.get("lora", {}))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokenized = [tokenize_example(tokenizer, r, hp["max_length"]) for r in records]
    # a prompt that fills max_length leaves no response token to learn from
    examples = [e for e in tokenized if any(l != IGNORE for l in e["labels"])]
    if not examples:
        raise ValueError(f"no training example has a response token left within max_length {hp['max_length']}")
    if len(examples) < len(tokenized):
        log(f"{len(tokenized) - len(examples)} of {len(tokenized)} examples dropped: prompt longer than max_length {hp['max_length']}")
    micro = hp["micro_batch_size"]
    accumulation = max(1, hp["batch_size"] // micro)
    steps_per_epoch = math.ceil(len(examples) / (micro * accumulation))
    total_steps = steps_per_epoch * hp["epochs"]
    from transformers import get_cosine_schedule_with_warmup

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=hp["lr"], weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(hp["warmup_ratio"] * total_steps), total_steps)
    rng = random.Random(hp["seed"])
    history, start = [], time.monotonic()
    model.train()
    step = 0
    for epoch in range(hp["epochs"]):
        order = list(range(len(examples)))
        rng.shuffle(order)
        batches = [order[i : i + micro] for i in range(0, len(order), micro)]
        for first in range(0, len(batches), accumulation):
            group = batches[first : first + accumulation]
            # weight by target tokens so the loss equals one big batch's mean
            n_tokens = sum(sum(l != IGNORE for l in examples[i]["labels"][1:]) for b in group for i in b)
            total = 0.0
            for b in group:
                batch = {k: v.to(model.device) for k, v in collate([examples[i] for i in b], pad_id).items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = torch.nn.functional.cross_entropy(
                    logits[:, :-1].float().reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                    ignore_index=IGNORE, reduction="sum") / n_tokens
                loss.backward()
                total += loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            history.append({"step": step, "epoch": epoch, "loss": round(total, 4), "lr": scheduler.get_last_lr()[0]})
            log(f"step {step}/{total_steps} epoch {epoch} loss {total:.4f}")
    summary = {"examples": len(examples), "dropped_too_long": len(tokenized) - len(examples), "steps": total_steps, "seconds": round(time.monotonic() - start, 1),
               "first_loss": history[0]["loss"], "last_loss": history[-1]["loss"], "hyperparameters": hp}
    _save(model, tokenizer, out_dir, hp["method"], history, summary)
    return summary


def _save(model, tokenizer, out_dir, method, history, summary) -> None:
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    if method.startswith("lora"):
        model.save_pretrained(tmp / "adapter")
        if method == "lora":  # an ordinary HF model that any loader (vLLM too) can serve
            model = model.merge_and_unload()
    if method != "lora-8bit":
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "train_log.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (tmp / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
