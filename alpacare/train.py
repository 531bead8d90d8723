"""Supervised fine-tuning in the Alpaca recipe on transformers' `Trainer`.

Why `Trainer` (not TRL's SFTTrainer, not a loop on plain accelerate): it is already a
dependency, it runs on accelerate (so a launch with one process per device gives FSDP, DeepSpeed ZeRO-3 or DDP
across a job's GPUs), and it brings bf16 (or fp16) autocast over fp32 master weights, tf32,
gradient accumulation with the loss normalised over the whole global batch (also across
devices), activation checkpointing, sharded checkpoints and exact resume (optimizer,
scheduler, RNG and data position). SFTTrainer would add a dependency whose own prompt
formatting and masking we would have to switch off, since those are the parts that are ours:

- the prompt (alpacare.template, the same definition generation uses; BOS where the
  tokenizer adds one), the response and EOS appended, loss on response tokens only;
- the training order (training_order: whole global batches, so processes never split unevenly),
  the data mixture, the derived gradient accumulation, and the artifacts;
- when to checkpoint (every save_minutes) and the progress lines (callbacks).

One process per device: `python -m alpacare.train <run.json>` (what stages.finetune.launch
starts on every GPU), or `run()` in-process for a single device. The stage
(alpacare.stages.finetune) writes run.json and exports the trained model afterwards.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path

import torch

from . import hardware
from .template import alpaca_prompt, encode_continuation, encode_prompt

log = logging.getLogger("alpacare")

IGNORE = -100  # label of tokens that carry no loss (prompt, padding)
METHODS = ("full", "lora", "lora-8bit", "lora-4bit")
QUANTISED_BITS = {"lora-8bit": 8, "lora-4bit": 4}
# what every training job imports, checked against pyproject.toml first (alpacare.versions)
TRAINING_PACKAGES = ("torch", "transformers", "accelerate", "peft")
STEPS_DIR = "steps"  # Trainer checkpoints (checkpoint-K/), inside the run's resumable work dir
TRAINED_DIR = "trained"  # the finished model as the Trainer saved it, before export
PAD = -1  # in the training order: a padding example (one token, no loss) that fills the last global batch

# DeepSpeed ZeRO-3 (distributed: deepspeed); "auto" values are filled in from the Trainer's
# arguments, so the batch, accumulation, clipping and precision stay the ones we computed.
# Checkpoints during training hold each rank's own shards (no 16-bit gather onto rank 0 at
# every save: a 7B model's 14 GB through one process); the finished model is gathered once, at
# the end (run: gather_at_the_end).
DEEPSPEED_ZERO3 = {
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "overlap_comm": True, "contiguous_gradients": True,
                          "stage3_gather_16bit_weights_on_model_save": False},
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
}


def add_pad_token(tokenizer, model=None, token: str = "[PAD]") -> bool:
    """Stanford Alpaca's train.py as AlpaCare's training/train_alpaca.py ran it: where the
    tokenizer has no pad token (LLaMA's has none), add `token` as one and grow the model's
    input and output embeddings by a row each, set to the mean of the existing rows. Without a
    model (the tokenizer saved beside a checkpoint) only the tokenizer changes. Whether a
    token was added; weights on the meta device (FSDP ranks that receive rank 0's) only change shape."""
    if tokenizer.pad_token is not None:
        return False
    added = tokenizer.add_special_tokens({"pad_token": token})
    if model is not None and added:
        model.resize_token_embeddings(len(tokenizer))
        with torch.no_grad():
            for embeddings in {id(e): e for e in (model.get_input_embeddings(), model.get_output_embeddings())}.values():
                weight = embeddings.weight
                if weight.device.type != "meta":
                    weight[-added:] = weight[:-added].mean(dim=0, keepdim=True)
    return bool(added)


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
    prompt, the ids over the response and EOS. As Stanford Alpaca (and so AlpaCare and
    medAlpaca) tokenized: prompt and response encoded as one text, so a sentencepiece (LLaMA)
    tokenizer starts the response without a word-start marker of its own; the prompt's ids are
    still exactly the ones generation feeds the model (template.encode_continuation)."""
    prompt_text = alpaca_prompt(record["instruction"], record.get("input", ""))
    if record["output"]:
        prompt, target = encode_continuation(tokenizer, prompt_text, record["output"])
    else:
        prompt, target = encode_prompt(tokenizer, prompt_text), []
    target = target + [tokenizer.eos_token_id]
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


def training_order(lengths: list[int], epochs: int, global_batch: int, seed: int, group_by_length: bool) -> list[int]:
    """Example indices in training order, all epochs one after the other: each epoch shuffled
    with its own seed (grouped by length if asked) and filled up with PAD to a whole number
    of global batches. Every optimizer step then holds exactly `global_batch` entries, so any
    number of processes x accumulation splits it into equal micro-batches: no rank runs a
    forward/backward that the others do not join (its collectives would wait for partners
    until the distributed timeout), and N processes train on exactly the examples, step by
    step, that one process would. The padding carries no loss, so it changes nothing else."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    order = []
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(seed + epoch)
        if group_by_length:
            indices = get_length_grouped_indices(lengths, global_batch, generator=generator)
        else:
            indices = torch.randperm(len(lengths), generator=generator).tolist()
        order += indices + [PAD] * (-len(indices) % global_batch)
    return order


class Examples(torch.utils.data.Dataset):
    """The encoded examples in `order` (PAD: a one-token example whose label carries no loss)."""

    def __init__(self, examples: list[dict], order: list[int], pad: int):
        self.examples, self.order = examples, order
        self.pad = {"input_ids": [pad], "labels": [IGNORE]}

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        j = self.order[i]
        return self.pad if j == PAD else self.examples[j]


def fsdp_active(run: dict) -> bool:
    """Whether the run shards its model with FSDP: several GPU processes (accelerate runs CPU
    processes as plain DDP) and a method whose weights can be sharded (not 8/4-bit)."""
    rt = run["runtime"]
    return rt["devices"] > 1 and rt["gpu"] and run["hp"]["method"] not in QUANTISED_BITS and rt["distributed"] == "fsdp"


def training_arguments(run: dict):
    """The Trainer's arguments from the resolved run (see stages.finetune.resolve_run)."""
    from transformers import TrainingArguments

    hp, rt = run["hp"], run["runtime"]
    gc = rt["gradient_checkpointing"]
    kwargs = {}
    if fsdp_active(run):
        kwargs["fsdp"] = True  # transformers 5: everything else in fsdp_config (the string form is deprecated)
        kwargs["fsdp_config"] = {
            "version": 2,
            "reshard_after_forward": True,  # full shard (AlpaCare's full_shard)
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "activation_checkpointing": gc,  # FSDP's own: no redundant all-gather in backward
            # resumable checkpoints: each rank writes its own shard (torch.distributed.checkpoint);
            # the finished model is gathered once, at the end (run)
            "state_dict_type": "SHARDED_STATE_DICT",
            # rank 0 reads the weights, the others start empty (load_for_training) and receive
            # their shards from it; the launch environment says so too (stages.finetune.launch_env)
            "cpu_ram_efficient_loading": True,
            **({"transformer_layer_cls_to_wrap": rt["fsdp_wrap"]} if rt.get("fsdp_wrap") else {}),
        }
        gc = False
    elif rt["devices"] > 1 and rt["distributed"] == "deepspeed" and hp["method"] not in QUANTISED_BITS:
        kwargs["deepspeed"] = DEEPSPEED_ZERO3
    return TrainingArguments(
        output_dir=str(Path(run["work_dir"]) / STEPS_DIR),
        per_device_train_batch_size=rt["micro_batch_size"],
        gradient_accumulation_steps=rt["accumulation"],
        num_train_epochs=1,  # the epochs are laid out one after the other in the training order
        learning_rate=hp["lr"],
        lr_scheduler_type="cosine",
        warmup_steps=float(hp["warmup_ratio"]),  # a float < 1 is a ratio of all steps
        weight_decay=hp["weight_decay"],
        max_grad_norm=1.0,
        seed=hp["seed"],
        train_sampling_strategy="sequential",  # the order is training_order's
        bf16=rt["precision"] == "bf16",
        fp16=rt["precision"] == "fp16",  # GPUs before Ampere (alpacare.hardware): fp32 masters, loss scaling
        tf32=True if rt["tf32"] else None,  # None: leave it alone (TrainingArguments refuses tf32 below Ampere)
        activation_checkpointing=gc,
        save_strategy="no",  # Checkpoints decides (every save_minutes / save_steps, never at the end)
        save_total_limit=1,  # the latest is all a resume needs
        logging_strategy="steps",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,  # ProgressLog writes readable lines to the job's log instead
        use_cpu=not rt["gpu"],
        ddp_backend="gloo" if rt["devices"] > 1 and not rt["gpu"] else None,
        dataloader_num_workers=0,
        **kwargs,
    )


def load_for_training(backbone_dir: str, method: str, lora: dict | None, gradient_checkpointing: bool,
                      compute_dtype: torch.dtype, empty: bool = False):
    """The model to train. Full: fp32 weights (the master copy; bf16 or fp16 is the autocast
    compute dtype on GPUs). LoRA: a frozen base in the compute dtype with fp32 adapters.
    lora-8bit/-4bit: the base quantised with bitsandbytes, one copy per GPU.

    empty: FSDP ranks other than 0, which never read the weights: rank 0 does, and
    accelerate (cpu_ram_efficient_loading) sends each rank its shard. transformers 5 reads
    the whole checkpoint on every rank even with ACCELERATE_USE_FSDP and
    FSDP_CPU_RAM_EFFICIENT_LOADING set, so without this each GPU process would hold a full
    fp32 copy in host memory. See empty_storage for why not the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = torch.float32 if method == "full" else compute_dtype
    if empty:
        from accelerate import init_empty_weights

        with init_empty_weights():  # parameters on meta; buffers (rotary frequencies) computed for real
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(backbone_dir), dtype=dtype)
        empty_storage(model)
    else:
        kwargs = {"dtype": dtype}
        if method in QUANTISED_BITS:
            from accelerate import PartialState
            from transformers import BitsAndBytesConfig

            if QUANTISED_BITS[method] == 8:
                kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            else:
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=compute_dtype)
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


def empty_storage(model: torch.nn.Module) -> None:
    """Give every parameter on the meta device real, uninitialised CPU storage, in place (tied
    parameters stay one tensor; buffers are kept as they are).

    Why not leave them on meta: the Trainer builds the optimizer before accelerate shards the
    model, and accelerate's FSDP2 path then swaps each optimizer parameter for its sharded
    one by the original's data_ptr(), which is 0 for every meta tensor; all of them would
    map to one parameter (the last, lm_head.weight), and that rank's optimizer would train
    no other shard. torch.empty gives each parameter its own address without touching it:
    the operating system backs no page of host memory until it is written, and accelerate
    moves the model to meta before it receives rank 0's weights, so it never is."""
    made: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None or param.device.type != "meta":
                continue
            if id(param) not in made:
                made[id(param)] = torch.nn.Parameter(torch.empty_like(param, device="cpu"),
                                                     requires_grad=param.requires_grad)
            module._parameters[name] = made[id(param)]


def callbacks(run: dict, steps_per_epoch: int, clock=time.monotonic) -> list:
    """The job log's progress lines and the resumable checkpoints (TrainerCallbacks)."""
    from transformers import TrainerCallback

    rt = run["runtime"]

    class ProgressLog(TrainerCallback):
        """Every progress_seconds, and at the last step, one line in the job's log: step/total,
        epoch, loss, learning rate, the rate and the time left (as the LLM layer's lines do)."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = self.last = clock()
            self.first_step = state.global_step  # a resumed run counts its rate from where it resumed

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            now = clock()
            if now - self.last < rt["progress_seconds"] and state.global_step < state.max_steps:
                return
            self.last = now
            rate = (state.global_step - self.first_step) / max(now - self.start, 1e-9)
            left = (state.max_steps - state.global_step) / rate if rate > 0 else float("nan")
            log.info("train: step %d/%d (epoch %.2f), loss %.4f, lr %.3g, %.3f steps/s, ~%.0fs left",
                     state.global_step, state.max_steps, state.global_step / steps_per_epoch, logs["loss"],
                     logs.get("learning_rate", 0.0), rate, left)

    class Checkpoints(TrainerCallback):
        """A resumable checkpoint every save_minutes of training (and every save_steps
        optimizer steps where set), never at the last step: the finished model is saved right
        after, gathered once. A sharded save is collective, so rank 0's clock decides for all
        ranks; a rank that skipped the save would leave the others waiting."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = clock()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                return
            steps, minutes = rt.get("save_steps"), rt.get("save_minutes")
            due = bool(steps) and state.global_step % steps == 0
            due |= minutes is not None and clock() - self.last >= 60 * minutes
            if args.world_size > 1 and minutes is not None:  # steps alone agree without asking
                flag = torch.tensor([int(due)], device=args.device)
                torch.distributed.broadcast(flag, src=0)
                due = bool(flag.item())
            if due:
                control.should_save = True
                self.last = clock()

    return [ProgressLog(), Checkpoints()]


# A Trainer checkpoint (transformers' Trainer._save_checkpoint) is written in place, file by
# file: the weights, the optimizer and scheduler, each process's RNG state, and last, by the
# main process, trainer_state.json. A kill during a save (SIGTERM at preemption, a time limit)
# leaves a checkpoint-N that cannot be resumed. Of each part, any one of the names will do:
CHECKPOINT_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
                      "pytorch_model_fsdp_0/.metadata", "latest")  # plain, sharded, LoRA, FSDP, DeepSpeed
CHECKPOINT_OPTIMIZER = ("optimizer.pt", "optimizer_0/.metadata", "latest")  # plain, FSDP, DeepSpeed
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_gaps(path: Path, processes: int) -> str | None:
    """What keeps a Trainer checkpoint from being resumed by `processes` processes, or None
    when it is complete: trainer_state.json (written last) whole, the scheduler, every
    process's RNG state, the weights and the optimizer; a distributed checkpoint
    (torch.distributed.checkpoint: FSDP's sharded state) is whole once its .metadata is
    written, which its coordinator does after every rank has written its shards."""
    try:
        json.loads((path / "trainer_state.json").read_text())["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return "trainer_state.json missing or cut short"
    rng = ["rng_state.pth"] if processes == 1 else [f"rng_state_{rank}.pth" for rank in range(processes)]
    missing = [name for name in ("scheduler.pt", *rng) if not (path / name).is_file()]
    for part, names in (("weights", CHECKPOINT_WEIGHTS), ("optimizer state", CHECKPOINT_OPTIMIZER)):
        if not any((path / name).is_file() for name in names):
            missing.append(f"{part} ({' or '.join(names)})")
    missing += [f"{d.name}/.metadata" for d in sorted(path.iterdir())
                if d.is_dir() and any(d.glob("*.distcp")) and not (d / ".metadata").is_file()]
    return ", ".join(missing) or None


def _checkpoints(work_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint-N in the run's work dir, newest first."""
    steps = Path(work_dir) / STEPS_DIR
    if not steps.is_dir():
        return []
    return sorted(((int(m[1]), d) for d in steps.iterdir() if d.is_dir() and (m := _CHECKPOINT.match(d.name))),
                  reverse=True)


def last_checkpoint(work_dir: str | Path, processes: int) -> str | None:
    """The newest complete checkpoint-N in the run's work dir (None: start from scratch)."""
    return next((str(path) for _, path in _checkpoints(work_dir) if checkpoint_gaps(path, processes) is None), None)


def incomplete_checkpoints(work_dir: str | Path, processes: int) -> list[tuple[Path, str]]:
    """(path, what it lacks) of each checkpoint-N newer than the newest complete one: what an
    interrupted save left. alpacare.stages.finetune deletes them before training resumes, so
    that the Trainer (which keeps one checkpoint, the highest-numbered) never takes one for
    the latest and deletes the good one beside it."""
    found = []
    for _, path in _checkpoints(work_dir):
        gaps = checkpoint_gaps(path, processes)
        if gaps is None:
            break
        found.append((path, gaps))
    return found


def gather_at_the_end(trainer) -> None:
    """Let the final save_model gather the shards into one model, once, for the export:
    checkpoints during training stay sharded (FSDP: SHARDED_STATE_DICT; DeepSpeed ZeRO-3:
    stage3_gather_16bit_weights_on_model_save false, which its engine reads at each save)."""
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    if trainer.is_deepspeed_enabled:
        trainer.model_wrapped._config.zero_config.gather_16bit_weights_on_model_save = True


def run(run: dict, extra_callbacks=()) -> dict | None:
    """Train one model in this process (one of several under stages.finetune.launch), resuming
    from the work dir's latest checkpoint if there is one; the main process saves the model
    to <work_dir>/trained/ with train_state.json and returns that state."""
    from transformers import AutoTokenizer, PrinterCallback, Trainer, set_seed

    hp, rt = run["hp"], run["runtime"]
    tokenizer = AutoTokenizer.from_pretrained(run["backbone"])
    with open(run["data"], encoding="utf-8") as f:
        records = json.load(f)
    examples, dropped = encode_all(tokenizer, records, hp["max_length"])
    order = training_order([len(e["input_ids"]) for e in examples], hp["epochs"], hp["batch_size"], hp["seed"],
                           hp["group_by_length"])
    steps_per_epoch = -(-len(examples) // hp["batch_size"])
    # before the model: it sets up the process group (FSDP's empty ranks, ZeRO-3's sharded load need it)
    args = training_arguments(run)
    # LoRA's adapters start from random weights: seeded by the run (under FSDP rank 0's are
    # sent to all ranks, so any number of processes starts where one does)
    set_seed(hp["seed"])
    model = load_for_training(run["backbone"], hp["method"], hp.get("lora"), rt["gradient_checkpointing"],
                              hardware.DTYPES[rt["precision"]], empty=fsdp_active(run) and args.process_index != 0)
    if hp.get("pad_token"):  # AlpaCare's protocol: train_alpaca.py's [PAD] token and resized embeddings
        add_pad_token(tokenizer, model, hp["pad_token"])
    trainer = Trainer(model=model, args=args, train_dataset=Examples(examples, order, pad_id(tokenizer)),
                      data_collator=collator(tokenizer, rt["padding_free"]),
                      callbacks=[*callbacks(run, steps_per_epoch), *extra_callbacks])
    trainer.remove_callback(PrinterCallback)  # a dict per step; ProgressLog's lines replace it
    resume = last_checkpoint(run["work_dir"], rt["devices"])
    resumed_from = int(resume.rsplit("-", 1)[1]) if resume else 0
    if trainer.is_world_process_zero():
        sharding = "FSDP" if trainer.is_fsdp_enabled else "DeepSpeed" if trainer.is_deepspeed_enabled else "replicated"
        log.info("%s fine-tune of %s: %d examples (%d left out: no response token within max_length), "
                 "batch %d = %d per device x %d accumulation x %d process(es), %d steps per epoch (%d padding "
                 "examples in all), %s weights, %s, %s on %s",
                 hp["method"], run["backbone"], len(examples), dropped, hp["batch_size"], rt["micro_batch_size"],
                 rt["accumulation"], rt["devices"], steps_per_epoch, order.count(PAD), sharding,
                 args.parallel_mode.value, rt["precision"], hardware.describe() if rt["gpu"] else "CPU")
        if resume:
            log.info("resuming from %s (step %d)", resume, resumed_from)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    out = Path(run["work_dir"]) / TRAINED_DIR
    gather_at_the_end(trainer)
    trainer.save_model(str(out))  # gathers FSDP / ZeRO-3 shards; only the main process writes
    if not trainer.is_world_process_zero():
        return None
    losses = [{"step": h["step"], "epoch": round(h["step"] / steps_per_epoch, 4),
               **{k: h[k] for k in ("loss", "learning_rate", "grad_norm") if k in h}}
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
