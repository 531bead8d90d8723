"""Stage: fine-tuning one model (backbone x data mixture x method).

The work happens in a resumable directory beside the checkpoint, `<out_dir>.resume/`: it is
not a declared output, so Snakemake leaves it alone when a job fails or is killed, and the
rerun continues from its latest Trainer checkpoint. It is deleted once the checkpoint is
exported. A model that asks for more than one GPU is trained by torch's launcher with one
process per granted GPU; otherwise in this process.

Settings come in two kinds. `hp` (the rule's params) decide the trained weights: editing one
retrains. `runtime` settings only decide how the same global batch is reached on the job's
hardware (GPUs, per-device batch, activation checkpointing, sharding, checkpoint interval,
padding-free batching): editing them retrains nothing. The precision is the job's GPUs' own
(alpacare.hardware: bf16 from Ampere on, fp16 before, fp32 on a CPU) and is recorded in
train_config.json."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .. import cluster, mixture
from ..io import read_json, write_json, write_text

log = logging.getLogger("alpacare")

# model settings that are not hyperparameters (see the module docstring); `gpus` is the
# SLURM request, and the job must see that many
RUNTIME_KEYS = ("gpus", "micro_batch_size", "gradient_checkpointing", "save_minutes", "save_steps", "distributed",
                "padding_free", "fsdp_wrap")
NOT_SETTINGS = ("backbone", "data")
# runtime settings a resumed run may change without starting over
RESUMABLE_EDITS = ("save_minutes", "save_steps", "progress_seconds")
SAVE_MINUTES, PROGRESS_SECONDS = 30, 30.0


def split_settings(spec: dict, run_seed: int) -> tuple[dict, dict]:
    """(hp, runtime) of a model's config entry. A setting its method does not use (the LoRA
    block of a full fine-tune) is left out of hp, so editing it retrains nothing."""
    hp = {k: v for k, v in spec.items() if k not in RUNTIME_KEYS + NOT_SETTINGS}
    if not hp.get("method", "full").startswith("lora"):
        hp.pop("lora", None)
    hp["seed"] = run_seed
    return hp, {k: spec[k] for k in RUNTIME_KEYS if k in spec}


def runtime_settings(config: dict, model: str) -> dict:
    """A model's runtime settings as its training job uses them: activation checkpointing
    switched on where the GPUs' memory needs it (alpacare.cluster.finetune_gpu_plan, which
    also stops a model that cannot fit, naming what to change); on a test cluster whose GPUs
    are fake (cluster.fake_gpus), the CPU."""
    runtime = split_settings(config["models"][model], config["run_seed"])[1]
    plan = cluster.finetune_gpu_plan(config, model)
    if plan["gradient_checkpointing"] and not runtime.get("gradient_checkpointing"):
        log.info("activation checkpointing on: %s", plan["why"])
    runtime["gradient_checkpointing"] = plan["gradient_checkpointing"]
    if config["cluster"].get("fake_gpus") and runtime.get("gpus"):
        log.warning("cluster.fake_gpus: the job holds %d GPU(s) with no CUDA behind them; training on the CPU",
                    runtime["gpus"])
        runtime["gpus"] = 0
    return runtime


def resolve_run(hp: dict, runtime: dict, devices: int, backbone_dir: str, work_dir: Path) -> dict:
    """Everything a training process needs, derived once: accumulation from the global batch,
    precision from the job's GPUs (none: fp32 on the CPU). Saved as train_config.json with the checkpoint."""
    from .. import hardware  # torch: imported only where a job trains (the DAG reads this module too)
    from ..train import accumulation_steps

    hp = {"weight_decay": 0.0, "group_by_length": False, **hp}
    micro = runtime.get("micro_batch_size", 4)
    gpu = bool(runtime.get("gpus"))
    rt = {
        "devices": devices,
        "gpu": gpu,
        "micro_batch_size": micro,
        "accumulation": accumulation_steps(hp["batch_size"], micro, devices),
        "gradient_checkpointing": runtime.get("gradient_checkpointing", False),
        "save_minutes": runtime.get("save_minutes", SAVE_MINUTES),
        "save_steps": runtime.get("save_steps"),
        "progress_seconds": runtime.get("progress_seconds", PROGRESS_SECONDS),
        "distributed": runtime.get("distributed", "fsdp"),
        "fsdp_wrap": runtime.get("fsdp_wrap"),
        "padding_free": runtime.get("padding_free", False),
        "precision": hardware.precision() if gpu else "fp32",  # autocast compute; trained weights stay fp32
        "tf32": gpu and hardware.tf32(),
    }
    return {"backbone": str(Path(backbone_dir).resolve()), "data": str(work_dir / "data.json"),
            "work_dir": str(work_dir), "hp": hp, "runtime": rt}


def _identity(run: dict, records: list[dict]) -> str:
    """What a resumable run must share with the interrupted one to continue it."""
    settings = {**run, "runtime": {k: v for k, v in run["runtime"].items() if k not in RESUMABLE_EDITS}}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(json.dumps(records, sort_keys=True).encode())
    for f in sorted(Path(run["backbone"]).rglob("*")):
        if f.is_file():
            digest.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    return digest.hexdigest()


def finetune(data: list[dict], backbone_dir: str, out_dir: str | Path, hp: dict, runtime: dict | None = None,
             devices: int | None = None, callbacks=()) -> dict:
    """Train and export one checkpoint to out_dir; returns its train_summary.

    data: [{"dataset": name, "path": Alpaca-format JSON, "max": cap or None, "seed": int or None}].
    devices: processes to train with. Default: one per GPU the model asks for (runtime `gpus`),
    which this job must see (a named error otherwise); one on the CPU where it asks for none.
    Given with `gpus: 0`: that many CPU processes (gloo), as the tests run them.
    callbacks: extra transformers TrainerCallbacks (in-process runs only)."""
    out_dir = Path(out_dir)
    run, report = prepare(data, backbone_dir, out_dir, hp, runtime or {}, devices)
    work = Path(run["work_dir"])
    started = time.monotonic()
    if run["runtime"]["devices"] > 1:
        launch(work / "run.json")
    else:
        from ..train import run as train

        train(run, extra_callbacks=callbacks)
    state = json.loads((work / "trained" / "train_state.json").read_text())
    summary = export(run, state, report, out_dir, seconds=time.monotonic() - started)
    shutil.rmtree(work)
    log.info("trained on %d examples, %d steps in %.1fs: loss %.3f -> %.3f", summary["examples"], summary["steps"],
             summary["seconds"], summary["first_loss"], summary["last_loss"])
    return summary


def prepare(data: list[dict], backbone_dir: str, out_dir: Path, hp: dict, runtime: dict,
            devices: int | None) -> tuple[dict, list[dict]]:
    """The resumable work dir `<out_dir>.resume/`, ready to train: the run resolved, the
    mixture drawn and written; an earlier attempt with other settings or data is cleared
    (one with the same ones is resumed). Returns (run, the mixture's report)."""
    from .. import hardware
    from ..train import QUANTISED_BITS, TRAINING_PACKAGES, check_method_runs_here, incomplete_checkpoints
    from ..versions import check_floors

    check_method_runs_here(hp["method"])  # before any work
    gpus = runtime.get("gpus", 0)
    processes = max(1, devices or gpus)
    deepspeed = processes > 1 and runtime.get("distributed", "fsdp") == "deepspeed"
    # here, not as a TypeError deep in training (transformers below 5.23, peft below 0.18, ...)
    check_floors(TRAINING_PACKAGES + ("bitsandbytes",) * (hp["method"] in QUANTISED_BITS) + ("deepspeed",) * deepspeed)
    if gpus:  # never fewer GPUs than asked for, nor the CPU instead: the job holds them
        hardware.require_gpus(devices or gpus, f"models.{out_dir.name}.gpus")
    work = Path(f"{out_dir}.resume")
    run = resolve_run(hp, runtime, processes, backbone_dir, work)

    parts = [{"dataset": d["dataset"], "records": read_json(d["path"]), "max": d.get("max"), "seed": d.get("seed")}
             for d in data]
    for part, d in zip(parts, data):
        for n, r in enumerate(part["records"]):
            if not (isinstance(r, dict) and isinstance(r.get("instruction"), str) and isinstance(r.get("output"), str)):
                raise ValueError(f"{d['path']}: record {n} is not in Alpaca format (instruction, input, output)")
    records, report = mixture.mix(parts, run_seed=hp["seed"])
    for part in report:
        log.info("data %s: %d of %d rows (max %s, seed %d)", part["dataset"], part["taken"], part["available"],
                 part["max"], part["seed"])

    identity = _identity(run, records)
    marker = work / "identity"
    if work.exists() and (not marker.exists() or marker.read_text() != identity):
        log.info("%s holds a run with other settings or data; starting over", work)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for path, gaps in incomplete_checkpoints(work, processes):
        log.warning("%s was cut short while it was saved (%s): deleted; resuming from the checkpoint before it",
                    path, gaps)
        shutil.rmtree(path)
    write_json(run["data"], records)
    write_json(work / "run.json", run)
    write_text(marker, identity)
    return run, report


def launch_env(run: dict, environ: dict) -> dict:
    """The training processes' environment: the job's, less any ACCELERATE_* / FSDP_* setting
    the user's shell carries (accelerate and transformers read them at start-up: a stray
    ACCELERATE_MIXED_PRECISION=fp16 or ACCELERATE_USE_DEEPSPEED would change the run), plus
    ours. Under FSDP, transformers and accelerate read ACCELERATE_USE_FSDP and
    FSDP_CPU_RAM_EFFICIENT_LOADING when the model is loaded, before the Trainer builds its
    Accelerator: without them each process would act as if it loaded a whole model of its own
    (alpacare.train.load_for_training keeps all but rank 0 empty; these say the same to the
    libraries). Each process gets its share of the job's cores; on the CPU it sees no GPU."""
    from ..train import fsdp_active

    env = {k: v for k, v in environ.items() if not k.startswith(("ACCELERATE_", "FSDP_"))}
    env["ACCELERATE_MIXED_PRECISION"] = {"bf16": "bf16", "fp16": "fp16"}.get(run["runtime"]["precision"], "no")
    if fsdp_active(run):
        env.update(ACCELERATE_USE_FSDP="true", FSDP_CPU_RAM_EFFICIENT_LOADING="true")
    if not run["runtime"]["gpu"]:
        env["CUDA_VISIBLE_DEVICES"] = ""
    # the job's cores where the OS tells (SLURM pins a job to its own), else the machine's (macOS)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    env["OMP_NUM_THREADS"] = str(max(1, cores // run["runtime"]["devices"]))
    return env


def launch_command(run: dict, run_path: Path) -> list[str]:
    """One training process per device, started by torch's own launcher (what `accelerate
    launch` runs underneath), so that nothing outside the run decides how it trains:

    - no configuration file: `accelerate launch` fills every setting not given on its command
      line from the user's ~/.cache/huggingface/accelerate/default_config.yaml (a one-GPU
      workstation's `gpu_ids: '0'` stops a 4-GPU launch; a DeepSpeed or FSDP section there
      changes it). The Trainer builds the Accelerator from our TrainingArguments and
      launch_env, which is everything the processes need.
    - no port chosen beforehand: `--standalone` rendezvouses through a store that binds port
      0 and holds it, and hands the processes that address. Picking a free port and passing
      it (what `--main_process_port 0` does) leaves a gap in which another job on the node can
      take it; a port derived from SLURM_JOB_ID can still meet another job's, and a machine
      without SLURM has no job id.
    - no restarts: a failed process fails the job, and Snakemake's retry resumes from the
      last complete checkpoint."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(run["runtime"]["devices"]), "--max_restarts", "0",
            "-m", "alpacare.train", str(run_path)]


def launch(run_path: Path) -> None:
    """Start the training processes (launch_command); their output goes to the job's log."""
    run = read_json(run_path)
    cmd = launch_command(run, run_path)
    log.info("launching %d processes: %s", run["runtime"]["devices"], " ".join(cmd))
    env = launch_env(run, os.environ)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log.info("| %s", line.rstrip())
    if proc.returncode:
        raise RuntimeError(f"training processes failed (exit {proc.returncode}); the log above has their output. "
                           f"Rerunning resumes from the last complete checkpoint in {run['work_dir']}")


def export(run: dict, state: dict, report: list[dict], out_dir: Path, seconds: float) -> dict:
    """The checkpoint directory, loadable by alpacare.checkpoints.load_model and by vLLM:
    full and lora: a standalone HF model in the backbone's dtype (LoRA merged; the adapter
    kept in adapter/); lora-8bit/-4bit: adapter/ plus base_model.json naming the base and its
    quantisation, loaded as base + adapter. Beside it: the tokenizer, train_config.json,
    train_log.jsonl, train_loss.png, train_mixture.json and train_summary.json."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ..checkpoints import BASE_MODEL_FILE
    from ..train import QUANTISED_BITS, TRAINED_DIR, add_pad_token

    hp, method = run["hp"], run["hp"]["method"]
    trained = Path(run["work_dir"]) / TRAINED_DIR
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    base_config = AutoConfig.from_pretrained(run["backbone"])
    dtype = getattr(base_config, "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if method == "full":
        AutoModelForCausalLM.from_pretrained(trained, dtype=dtype).save_pretrained(tmp)
    else:
        adapter_files = [f for f in trained.iterdir() if f.name.startswith("adapter_") or f.name == "README.md"]
        (tmp / "adapter").mkdir(parents=True)
        for f in adapter_files:
            shutil.copy(f, tmp / "adapter" / f.name)
        if method in QUANTISED_BITS:
            base = os.path.relpath(run["backbone"], out_dir.resolve())  # the project may move
            write_json(tmp / BASE_MODEL_FILE, {"base": base, "bits": QUANTISED_BITS[method]})
        else:  # merged: an ordinary HF model that any loader (vLLM too) serves
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(run["backbone"], dtype=dtype)
            PeftModel.from_pretrained(base, trained).merge_and_unload().save_pretrained(tmp)
    tokenizer = AutoTokenizer.from_pretrained(run["backbone"])
    if hp.get("pad_token"):  # as training saw it (AlpaCare's protocol)
        add_pad_token(tokenizer, token=hp["pad_token"])
    tokenizer.save_pretrained(tmp)

    import peft
    import transformers

    losses = state["log"]
    summary = {
        "examples": state["examples"], "dropped_too_long": state["dropped_too_long"],
        "target_tokens": state["target_tokens"], "steps": state["steps"],
        "resumed_from_step": state["resumed_from_step"], "seconds": round(seconds, 1),
        "first_loss": losses[0]["loss"], "last_loss": losses[-1]["loss"],
        "devices": run["runtime"]["devices"], "accumulation": run["runtime"]["accumulation"],
        "global_batch": hp["batch_size"], "hyperparameters": hp,
    }
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    write_json(tmp / "train_config.json", {**run, "versions": versions})
    write_text(tmp / "train_log.jsonl", "".join(json.dumps(h) + "\n" for h in losses))
    write_json(tmp / "train_mixture.json", report)
    write_json(tmp / "train_summary.json", summary)
    plot_losses(losses, tmp / "train_loss.png", title=f"{out_dir.name} ({method})")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return summary


def plot_losses(losses: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h["step"] for h in losses], [h["loss"] for h in losses], marker="." if len(losses) < 50 else None)
    ax.set(xlabel="optimizer step", ylabel="train loss (response tokens)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
