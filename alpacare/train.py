"""Supervised fine-tuning in the Alpaca recipe on transformers' `Trainer`.

Why `Trainer` (not TRL's SFTTrainer, not a loop on plain accelerate): it is already a
dependency, it runs on accelerate (so `accelerate launch` gives FSDP, DeepSpeed ZeRO-3 or DDP
across a job's GPUs), and it brings bf16 autocast over fp32 master weights, tf32, gradient
accumulation with the loss normalised over the whole global batch (also across devices),
activation checkpointing, a checkpoint every K steps and exact resume (optimizer, scheduler,
RNG and data position). SFTTrainer would add a dependency whose own prompt formatting and
masking we would have to switch off, since those are the parts that are ours:

- the prompt (alpacare.template, the same definition generation uses; BOS where the
  tokenizer adds one), the response and EOS appended, loss on response tokens only;
- the data mixture, the derived gradient accumulation, and the artifacts.

One process per device: `python -m alpacare.train <run.json>` (what `accelerate launch`
starts on every GPU), or `run()` in-process for a single device. The stage
(alpacare.stages.finetune) writes run.json and exports the trained model afterwards.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import torch

from .template import alpaca_prompt, encode_prompt

log = logging.getLogger("alpacare")

IGNORE = -100  # label of tokens that carry no loss (prompt, padding)
METHODS = ("full", "lora", "lora-8bit", "lora-4bit")
QUANTISED_BITS = {"lora-8bit": 8, "lora-4bit": 4}
STEPS_DIR = "steps"  # Trainer checkpoints (checkpoint-K/), inside the run's resumable work dir
TRAINED_DIR = "trained"  # the finished model as the Trainer saved it, before export

# DeepSpeed ZeRO-3 (distributed: deepspeed); "auto" values are filled in from the Trainer's
# arguments, so the batch, accumulation, clipping and precision stay the ones we computed.
DEEPSPEED_ZERO3 = {
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True,
                          "stage3_gather_16bit_weights_on_model_save": True},
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
}


def check_method_runs_here(method: str) -> None:
    """Fail before any work where a method cannot run (8/4-bit weights need CUDA + bitsandbytes)."""
    if method not in METHODS:
        raise ValueError(f"unknown training method {method!r}; one of {', '.join(METHODS)}")
    if method in QUANTISED_BITS:
        bits = QUANTISED_BITS[method]
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"method {method} loads the base weights in {bits}-bit with bitsandbytes, which needs a CUDA GPU, "
                "and none is visible here; use method lora (same adapter, full-precision base) on this machine")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise RuntimeError(f"method {method} needs the bitsandbytes package (pip install bitsandbytes)") from None


def accumulation_steps(global_batch: int, per_device: int, devices: int) -> int:
    """Gradient accumulation that makes per-device batch x accumulation x devices = global batch."""
    per_step = per_device * devices
    if global_batch % per_step:
        raise ValueError(f"batch_size {global_batch} is not a multiple of micro_batch_size {per_device} x "
                         f"{devices} device(s) = {per_step}; change micro_batch_size so that it divides")
    return global_batch // per_step


def encode_example(tokenizer, record: dict, max_length: int) -> dict:
    """input_ids = [BOS] prompt response EOS, cut at max_length; labels = IGNORE over the
    prompt, the ids over the response and EOS. Prompt and response are tokenized apart, so
    the prompt's ids are exactly the ones generation feeds the model."""
    prompt = encode_prompt(tokenizer, alpaca_prompt(record["instruction"], record.get("input", "")))
    target = tokenizer.encode(record["output"], add_special_tokens=False) + [tokenizer.eos_token_id]
    return {"input_ids": (prompt + target)[:max_length], "labels": ([IGNORE] * len(prompt) + target)[:max_length]}


def encode_all(tokenizer, records: list[dict], max_length: int) -> tuple[list[dict], int]:
    """Encoded examples, and how many were left out because max_length leaves them no response token."""
    encoded = [encode_example(tokenizer, r, max_length) for r in records]
    kept = [e for e in encoded if any(label != IGNORE for label in e["labels"])]
    if not kept:
        raise ValueError(f"no training example has a response token left within max_length {max_length}")
    return kept, len(encoded) - len(kept)


def pad_id(tokenizer) -> int:
    """Padding never reaches the loss (labels IGNORE) nor attention (mask 0), so EOS serves
    where the tokenizer has no pad token; no embedding is added, so vLLM and adapters fit."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


class PadCollator:
    """Right-pads a micro-batch to its longest example."""

    def __init__(self, pad: int):
        self.pad = pad

    def __call__(self, batch: list[dict]) -> dict:
        width = max(len(b["input_ids"]) for b in batch)
        fill = [width - len(b["input_ids"]) for b in batch]
        return {
            "input_ids": torch.tensor([b["input_ids"] + [self.pad] * n for b, n in zip(batch, fill)]),
            "labels": torch.tensor([b["labels"] + [IGNORE] * n for b, n in zip(batch, fill)]),
            "attention_mask": torch.tensor([[1] * len(b["input_ids"]) + [0] * n for b, n in zip(batch, fill)]),
        }


def collator(tokenizer, padding_free: bool):
    if padding_free:
        # one row per micro-batch, examples kept apart by position_ids (no padding computed)
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)
    return PadCollator(pad_id(tokenizer))


class Examples(torch.utils.data.Dataset):
    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


def on_cuda() -> bool:
    return torch.cuda.is_available()


def bf16_here() -> bool:
    return on_cuda() and torch.cuda.is_bf16_supported()


def training_arguments(run: dict):
    """The Trainer's arguments from the resolved run (see stages.finetune.resolve_run)."""
    from transformers import TrainingArguments

    hp, rt = run["hp"], run["runtime"]
    distributed = rt["devices"] > 1 and hp["method"] not in QUANTISED_BITS and rt["distributed"]
    gc = rt["gradient_checkpointing"]
    kwargs = {}
    if distributed == "fsdp":
        kwargs["fsdp"] = "full_shard auto_wrap"
        kwargs["fsdp_config"] = {
            "activation_checkpointing": gc,  # FSDP's own: no redundant all-gather in backward
            "state_dict_type": "FULL_STATE_DICT",  # checkpoints and the final save in the HF layout
            "cpu_ram_efficient_loading": on_cuda(),
            **({"transformer_layer_cls_to_wrap": rt["fsdp_wrap"]} if rt.get("fsdp_wrap") else {}),
        }
        gc = False
    elif distributed == "deepspeed":
        kwargs["deepspeed"] = DEEPSPEED_ZERO3
    return TrainingArguments(
        output_dir=str(Path(run["work_dir"]) / STEPS_DIR),
        per_device_train_batch_size=rt["micro_batch_size"],
        gradient_accumulation_steps=rt["accumulation"],
        num_train_epochs=hp["epochs"],
        learning_rate=hp["lr"],
        lr_scheduler_type="cosine",
        warmup_steps=float(hp["warmup_ratio"]),  # a float < 1 is a ratio of all steps
        weight_decay=hp["weight_decay"],
        max_grad_norm=1.0,
        seed=hp["seed"],
        data_seed=hp["seed"],
        train_sampling_strategy="group_by_length" if hp["group_by_length"] else "random",
        bf16=rt["bf16"],
        tf32=rt["tf32"] or None,
        activation_checkpointing=gc,
        save_strategy="steps",
        save_steps=rt["save_steps"],
        save_total_limit=1,  # the latest is all a resume needs
        logging_strategy="steps",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,  # ProgressLog writes one line per step to the job's log instead
        use_cpu=not on_cuda(),
        ddp_backend="gloo" if rt["devices"] > 1 and not on_cuda() else None,
        dataloader_num_workers=0,
        # the last, smaller batch of an epoch is split as it comes, not topped up with repeated
        # examples: N processes then see exactly the examples one process would
        accelerator_config={"even_batches": False},
        **kwargs,
    )


def load_for_training(backbone_dir: str, method: str, lora: dict | None, gradient_checkpointing: bool):
    """The model to train. Full: fp32 weights (the master copy; bf16 is the autocast compute
    dtype on GPUs). LoRA: a frozen base (bf16 on GPUs) with fp32 adapters. lora-8bit/-4bit:
    the base quantised with bitsandbytes, one copy per GPU."""
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch.float32}
    if method != "full" and on_cuda():
        kwargs["dtype"] = torch.bfloat16
    if method in QUANTISED_BITS:
        from accelerate import PartialState
        from transformers import BitsAndBytesConfig

        if QUANTISED_BITS[method] == 8:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": PartialState().local_process_index}
    model = AutoModelForCausalLM.from_pretrained(backbone_dir, **kwargs)
    model.config.use_cache = False  # no KV cache while training
    if method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    if method in QUANTISED_BITS:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def progress_log():
    from transformers import TrainerCallback

    class ProgressLog(TrainerCallback):
        """One line per logged step in the job's log: step/total, loss, lr, time left."""

        def __init__(self):
            self.start, self.first_step = time.monotonic(), None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            if self.first_step is None:
                self.first_step = state.global_step - 1
            done = state.global_step - self.first_step
            left = (time.monotonic() - self.start) / max(done, 1) * (state.max_steps - state.global_step)
            log.info("step %d/%d epoch %.2f loss %.4f lr %.3g (%.0fs left)", state.global_step, state.max_steps,
                     logs.get("epoch", 0.0), logs["loss"], logs.get("learning_rate", 0.0), left)

    return ProgressLog()


def last_checkpoint(work_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    steps = Path(work_dir) / STEPS_DIR
    return get_last_checkpoint(str(steps)) if steps.is_dir() else None


def run(run: dict, callbacks=()) -> dict | None:
    """Train one model in this process (one of several under `accelerate launch`), resuming
    from the work dir's latest checkpoint if there is one; the main process saves the model
    to <work_dir>/trained/ with train_state.json and returns that state."""
    from transformers import AutoTokenizer, Trainer

    hp, rt = run["hp"], run["runtime"]
    tokenizer = AutoTokenizer.from_pretrained(run["backbone"])
    with open(run["data"], encoding="utf-8") as f:
        records = json.load(f)
    examples, dropped = encode_all(tokenizer, records, hp["max_length"])
    args = training_arguments(run)  # before the model: ZeRO-3 must see it to shard at load time
    model = load_for_training(run["backbone"], hp["method"], hp.get("lora"), rt["gradient_checkpointing"])
    trainer = Trainer(model=model, args=args, train_dataset=Examples(examples),
                      data_collator=collator(tokenizer, rt["padding_free"]), callbacks=[progress_log(), *callbacks])
    resume = last_checkpoint(run["work_dir"])
    resumed_from = int(resume.rsplit("-", 1)[1]) if resume else 0
    if trainer.is_world_process_zero():
        sharding = "FSDP" if trainer.is_fsdp_enabled else "DeepSpeed" if trainer.is_deepspeed_enabled else "replicated"
        log.info("%s fine-tune of %s: %d examples (%d left out: no response token within max_length), "
                 "batch %d = %d per device x %d accumulation x %d process(es), %s weights, %s, bf16 %s",
                 hp["method"], run["backbone"], len(examples), dropped, hp["batch_size"], rt["micro_batch_size"],
                 rt["accumulation"], rt["devices"], sharding, args.parallel_mode.value, rt["bf16"])
        if resume:
            log.info("resuming from %s (step %d)", resume, resumed_from)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    out = Path(run["work_dir"]) / TRAINED_DIR
    trainer.save_model(str(out))  # gathers FSDP / ZeRO-3 shards; only the main process writes
    if not trainer.is_world_process_zero():
        return None
    losses = [{k: h[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm") if k in h}
              for h in trainer.state.log_history if "loss" in h]
    state = {
        "examples": len(examples), "dropped_too_long": dropped,
        "target_tokens": sum(sum(label != IGNORE for label in e["labels"]) for e in examples),
        "steps": trainer.state.global_step, "resumed_from_step": resumed_from,
        "seconds_this_run": round(time.monotonic() - started, 1),
        "train_runtime_metrics": result.metrics, "log": losses,
    }
    (out / "train_state.json").write_text(json.dumps(state, indent=2) + "\n")
    return state


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with open(argv[0], encoding="utf-8") as f:
        run(json.load(f))


if __name__ == "__main__":
    main(sys.argv[1:])
