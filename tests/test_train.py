"""Fine-tuning: real training runs of a tiny random-initialised Llama (BOS-adding tokenizer)
and of the bundled SmolLM2, on CPU."""

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alpacare.checkpoints import BASE_MODEL_FILE, fingerprint, load_model
from alpacare.llm import LLMError, Request
from alpacare.llm.local import prompt_ids
from alpacare.stages.finetune import finetune, launch_command, launch_env, resolve_run, split_settings
from alpacare.stages.generate import generate_outputs
from alpacare.template import adds_bos, alpaca_prompt, encode_prompt
from alpacare.train import IGNORE, PAD, accumulation_steps, callbacks, encode_all, encode_example, training_order
from tiny_llama import RECORDS, build_tiny_llama

# 8 examples, global batch 4: 2 steps an epoch, 6 in all; a checkpoint every 2 steps
HP = {"method": "full", "epochs": 3, "lr": 3e-3, "batch_size": 4, "max_length": 96, "warmup_ratio": 0.0, "seed": 7}
RUNTIME = {"micro_batch_size": 2, "save_steps": 2}  # 2 per device x accumulation 2 x 1 process
CURVE_TOLERANCE = 1e-4  # 2 processes vs 1: the same examples per step, only the summation order differs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.json"
    path.write_text(json.dumps(RECORDS))
    return str(path)


def data(path, **part):
    return [{"dataset": "tiny", "path": path, **part}]


@pytest.fixture(scope="module")
def full_run(tiny, data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "tiny-full"
    return out, finetune(data(data_file), tiny, out, HP, RUNTIME, devices=1)


def losses(checkpoint):
    return [json.loads(line)["loss"] for line in (Path(checkpoint) / "train_log.jsonl").read_text().splitlines()]


def test_examples_mask_the_prompt_and_start_with_bos_where_the_tokenizer_has_one(tiny, smollm2_dir):
    from transformers import AutoTokenizer

    record = RECORDS[2]
    prompt_text = alpaca_prompt(record["instruction"], record["input"])
    assert prompt_text.endswith("### Input:\nThe patient has a cough and a mild fever.\n\n### Response:")
    for path, bos_expected in ((tiny, True), (smollm2_dir, False)):
        tokenizer = AutoTokenizer.from_pretrained(path)
        assert adds_bos(tokenizer) is bos_expected
        example = encode_example(tokenizer, record, max_length=512)
        prompt = encode_prompt(tokenizer, prompt_text)
        assert (prompt[0] == tokenizer.bos_token_id) is bos_expected
        # generation feeds exactly the prompt training saw
        assert prompt_ids(tokenizer, Request(model=path, prompt=prompt_text)) == prompt
        n = len(prompt)
        assert example["input_ids"][:n] == prompt and example["labels"][:n] == [IGNORE] * n
        response = encode_prompt(tokenizer, prompt_text + record["output"])[n:] + [tokenizer.eos_token_id]
        assert example["input_ids"][n:] == response and example["labels"][n:] == response
    # a cut keeps the prompt's mask; an example left without a response token is dropped
    cut = encode_example(tokenizer, record, max_length=n + 2)
    assert cut["labels"] == [IGNORE] * n + response[:2]
    kept, dropped = encode_all(tokenizer, [record, RECORDS[0]], max_length=n + 2)
    assert dropped == 0 and len(kept) == 2
    with pytest.raises(ValueError, match="no training example has a response token left within max_length 10"):
        encode_all(tokenizer, [record], max_length=10)


def test_accumulation_is_derived_from_the_global_batch():
    assert accumulation_steps(128, 4, 4) == 8  # AlpaCare 7B: 4 GPUs x 4 x 8
    assert accumulation_steps(128, 2, 8) == 8  # 13B: 8 GPUs x 2 x 8
    assert accumulation_steps(128, 4, 1) == 32
    with pytest.raises(ValueError, match=r"batch_size 128 is not a multiple of micro_batch_size 3 x 4 device\(s\) = 12"):
        accumulation_steps(128, 3, 4)


def test_settings_a_method_does_not_use_are_not_hyperparameters():
    spec = {"backbone": "b", "data": [{"dataset": "d"}], "method": "full", "lr": 2e-5, "gpus": 4,
            "micro_batch_size": 4, "gradient_checkpointing": True, "save_steps": 50, "distributed": "fsdp",
            "lora": {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}}
    hp, runtime = split_settings(spec, run_seed=1)
    assert hp == {"method": "full", "lr": 2e-5, "seed": 1}
    assert runtime == {"gpus": 4, "micro_batch_size": 4, "gradient_checkpointing": True, "save_steps": 50,
                       "distributed": "fsdp"}
    assert split_settings({**spec, "method": "lora-8bit"}, run_seed=1)[0]["lora"] == spec["lora"]


def test_full_fine_tune_learns_and_leaves_every_artifact(full_run):
    out, summary = full_run
    curve = losses(out)
    assert len(curve) == summary["steps"] == 6 and curve[-1] < curve[0] - 0.1
    assert summary["examples"] == 8 and summary["resumed_from_step"] == 0
    assert (summary["devices"], summary["accumulation"], summary["global_batch"]) == (1, 2, 4)
    config = json.loads((out / "train_config.json").read_text())
    assert config["hp"]["lr"] == HP["lr"] and config["runtime"]["accumulation"] == 2 and config["runtime"]["precision"] == "fp32"
    assert json.loads((out / "train_mixture.json").read_text())[0] | {"seed": 0} == {
        "dataset": "tiny", "available": 8, "taken": 8, "max": None, "seed": 0}
    for name in ("model.safetensors", "config.json", "tokenizer.json", "train_loss.png", "train_summary.json"):
        assert (out / name).exists(), name
    assert not Path(f"{out}.resume").exists()  # the resumable work dir goes once the checkpoint is out


def generates_as_transformers_does(checkpoint: str, tmp_path, monkeypatch):
    """The generate stage (kind alpaca) on a checkpoint gives the same greedy tokens as
    transformers' own generate from the training prompt (BOS first where the tokenizer has one).
    Like with like: the same loaded model (its dtype and device: bf16 on a GPU, fp32 on a CPU)
    and one prompt at a time on both sides, since 16-bit sums depend on the batch's shape."""
    monkeypatch.chdir(tmp_path)  # the stage writes its ledger shard under results/ledger/
    testset = tmp_path / "testset.jsonl"
    items = [{"id": 0, "instruction": "What usually causes a fever?", "input": ""},
             {"id": 1, "instruction": "Summarize the note.", "input": "A cough."}]
    testset.write_text("".join(json.dumps(t) + "\n" for t in items))
    generate_outputs(testset, tmp_path / "out.json", generator="tuned", kind="alpaca", spec={"provider": "local"},
                     settings={"cache": None, "batch_size": 1}, model_dir=checkpoint, max_new_tokens=6)
    outputs = json.loads((tmp_path / "out.json").read_text())
    model, tokenizer = load_model(checkpoint)
    for item, output in zip(items, outputs):
        ids = encode_prompt(tokenizer, alpaca_prompt(item["instruction"], item["input"]))
        generated = model.generate(torch.tensor([ids], device=model.device), max_new_tokens=6,
                                   do_sample=False)[0, len(ids):]
        assert output["generator"] == "tuned"
        assert output["output"] == tokenizer.decode(generated, skip_special_tokens=True).strip()
    return outputs


def test_fine_tuned_checkpoint_generates_through_the_generate_stage(full_run, tmp_path, monkeypatch):
    outputs = generates_as_transformers_does(str(full_run[0]), tmp_path, monkeypatch)
    assert any(o["output"] for o in outputs)


KILLED_RUN = """
import json, os, signal, sys
from transformers import TrainerCallback
from alpacare.stages.finetune import finetune

class KillAtStep3(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:  # checkpoint-2 is on disk, step 3 is not saved
            os.kill(os.getpid(), signal.SIGKILL)

data, backbone, out, hp, runtime = json.loads(sys.argv[1])
finetune(data, backbone, out, hp, runtime, devices=1, callbacks=[KillAtStep3()])
"""


def test_a_killed_run_resumes_from_its_last_checkpoint_to_the_same_model(full_run, tiny, data_file, tmp_path):
    out = tmp_path / "tiny-full"
    args = json.dumps([data(data_file), tiny, str(out), HP, RUNTIME])
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, args], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    steps = Path(f"{out}.resume") / "steps"
    assert sorted(p.name for p in steps.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]
    assert not out.exists()

    summary = finetune(data(data_file), tiny, out, HP, RUNTIME, devices=1)
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 6
    reference_dir, reference = full_run
    assert summary["last_loss"] == pytest.approx(reference["last_loss"], abs=1e-6)
    assert losses(out) == pytest.approx(losses(reference_dir), abs=1e-6)  # the log spans both attempts
    resumed, uninterrupted = load_file(out / "model.safetensors"), load_file(reference_dir / "model.safetensors")
    assert all(torch.allclose(resumed[k], uninterrupted[k], atol=1e-6) for k in uninterrupted)


KILLED_WHILE_SAVING = """
import json, os, signal, sys
from transformers import Trainer
from alpacare.stages.finetune import finetune

save_rng_state = Trainer._save_rng_state

def killed_at_step_4(self, output_dir):  # weights, optimizer, scheduler written; RNG state, trainer_state.json not
    if self.state.global_step == 4:
        os.kill(os.getpid(), signal.SIGTERM)
    save_rng_state(self, output_dir)

Trainer._save_rng_state = killed_at_step_4
data, backbone, out, hp, runtime = json.loads(sys.argv[1])
finetune(data, backbone, out, hp, runtime, devices=1)
"""


def test_a_save_cut_short_is_skipped_and_the_run_resumes_from_the_complete_one_before(full_run, tiny, data_file,
                                                                                      tmp_path, caplog):
    """SIGTERM in the middle of the step-4 save leaves checkpoint-4 without its RNG state and
    trainer_state.json, beside a complete checkpoint-2: the rerun resumes from checkpoint-2 and
    trains to the uninterrupted model (before: it took checkpoint-4, and every retry failed)."""
    out = tmp_path / "tiny-full"
    args = json.dumps([data(data_file), tiny, str(out), HP, RUNTIME])
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_SAVING, args], capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -signal.SIGTERM, killed.stderr[-3000:]
    steps = Path(f"{out}.resume") / "steps"
    assert sorted(p.name for p in steps.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert (steps / "checkpoint-4" / "optimizer.pt").exists()
    assert not (steps / "checkpoint-4" / "trainer_state.json").exists()

    with caplog.at_level("WARNING", logger="alpacare"):
        summary = finetune(data(data_file), tiny, out, HP, RUNTIME, devices=1)
    cut = "checkpoint-4 was cut short while it was saved (trainer_state.json missing or cut short)"
    assert any(cut in r.getMessage() for r in caplog.records)
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 6
    reference_dir, _ = full_run
    assert losses(out) == pytest.approx(losses(reference_dir), abs=1e-6)
    resumed, uninterrupted = load_file(out / "model.safetensors"), load_file(reference_dir / "model.safetensors")
    assert all(torch.allclose(resumed[k], uninterrupted[k], atol=1e-6) for k in uninterrupted)


def test_a_checkpoint_is_complete_with_every_part_a_resume_reads(tmp_path):
    from alpacare.train import checkpoint_gaps, incomplete_checkpoints, last_checkpoint

    def checkpoint(step, files):
        path = tmp_path / "steps" / f"checkpoint-{step}"
        for name, text in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        return path

    state = json.dumps({"global_step": 2, "log_history": [{"loss": 1.0}] * 50})
    plain = {"model.safetensors": "w", "optimizer.pt": "o", "scheduler.pt": "s", "rng_state.pth": "r",
             "trainer_state.json": state}
    assert checkpoint_gaps(checkpoint(2, plain), processes=1) is None
    cut = checkpoint(4, {**plain, "trainer_state.json": state[:len(state) // 2]})  # killed while writing it
    assert checkpoint_gaps(cut, 1) == "trainer_state.json missing or cut short"
    assert last_checkpoint(tmp_path, 1).endswith("checkpoint-2")
    assert incomplete_checkpoints(tmp_path, 1) == [(cut, "trainer_state.json missing or cut short")]
    # two FSDP processes: each one's RNG state, and both distributed checkpoints' metadata
    fsdp = {"pytorch_model_fsdp_0/__0_0.distcp": "w", "pytorch_model_fsdp_0/__1_0.distcp": "w",
            "pytorch_model_fsdp_0/.metadata": "m", "optimizer_0/__0_0.distcp": "o", "optimizer_0/__1_0.distcp": "o",
            "optimizer_0/.metadata": "m", "scheduler.pt": "s", "rng_state_0.pth": "r", "rng_state_1.pth": "r",
            "trainer_state.json": state}
    assert checkpoint_gaps(checkpoint(10, fsdp), processes=2) is None
    no_rank1 = {k: v for k, v in fsdp.items() if k != "rng_state_1.pth"}
    assert checkpoint_gaps(checkpoint(12, no_rank1), 2) == "rng_state_1.pth"
    no_metadata = {k: v for k, v in fsdp.items() if k != "optimizer_0/.metadata"}
    assert checkpoint_gaps(checkpoint(14, no_metadata), 2) == (
        "optimizer state (optimizer.pt or optimizer_0/.metadata or latest), optimizer_0/.metadata")
    assert last_checkpoint(tmp_path, 2).endswith("checkpoint-10")
    assert [p.name for p, _ in incomplete_checkpoints(tmp_path, 2)] == ["checkpoint-14", "checkpoint-12"]


NINE = RECORDS + [{"instruction": "Name a symptom of a cold.", "input": "", "output": "A runny nose."}]


def test_an_uneven_split_over_two_processes_finishes_and_matches_one_process(tiny, tmp_path):
    """9 examples at micro-batch 2: 5 micro-batches an epoch, which 2 processes cannot share
    evenly. Every global batch is filled up with no-loss padding, so both processes run the
    same number of forwards (no collective waits for a partner) on the examples one process
    sees, step by step; and rank 0's clock decides every checkpoint for both (save_minutes 0:
    a checkpoint each step, which would hang were a rank to skip one)."""
    path = tmp_path / "nine.json"
    path.write_text(json.dumps(NINE))
    hp = {**HP, "epochs": 2}
    one = finetune(data(str(path)), tiny, tmp_path / "one", hp, {"micro_batch_size": 2}, devices=1)
    two = finetune(data(str(path)), tiny, tmp_path / "two", hp, {"micro_batch_size": 2, "save_minutes": 0}, devices=2)
    assert (one["steps"], two["steps"], two["devices"], two["accumulation"]) == (6, 6, 2, 1)  # 3 steps an epoch
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), abs=CURVE_TOLERANCE)
    first, second = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert all(torch.allclose(first[k], second[k], atol=1e-4) for k in first)


def test_every_optimizer_step_holds_one_whole_global_batch():
    lengths = [3, 9, 4, 7, 1, 8, 2, 6, 5]
    order = training_order(lengths, epochs=2, global_batch=4, seed=1, group_by_length=False)
    assert len(order) == 2 * 12 and order.count(PAD) == 2 * 3
    for epoch in (order[:12], order[12:]):
        assert sorted(i for i in epoch if i != PAD) == list(range(9))  # each example once an epoch
        assert epoch[9:] == [PAD] * 3  # the padding ends the epoch, inside its last global batch
    assert order[:9] != order[12:21]  # each epoch shuffled anew
    assert training_order(lengths, 2, 4, seed=1, group_by_length=False) == order  # seeded
    grouped = training_order(lengths, 1, 4, seed=1, group_by_length=True)
    assert sorted(i for i in grouped if i != PAD) == list(range(9))


def test_progress_lines_come_at_a_steady_interval_with_the_rate_and_time_left(caplog):
    from transformers import TrainerControl, TrainerState

    clock = FakeClock()
    run = {"runtime": {"progress_seconds": 30, "save_minutes": 30, "save_steps": None}}
    progress, _ = callbacks(run, steps_per_epoch=50, clock=clock)
    state = TrainerState(max_steps=100, global_step=0, is_world_process_zero=True)
    args, control = None, TrainerControl()
    progress.on_train_begin(args, state, control)
    with caplog.at_level("INFO", logger="alpacare"):
        for step in range(1, 101):
            clock.now += 10  # a step every 10 s: a line every third step, and at the last
            state.global_step = step
            progress.on_log(args, state, control, logs={"loss": 2.0, "learning_rate": 1e-5})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: ")]
    assert len(lines) == 100 // 3 + 1
    assert lines[0] == "train: step 3/100 (epoch 0.06), loss 2.0000, lr 1e-05, 0.100 steps/s, ~970s left"
    assert lines[-1].startswith("train: step 100/100 (epoch 2.00)") and lines[-1].endswith("~0s left")


def test_checkpoints_come_every_save_minutes_and_never_at_the_last_step():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    clock = FakeClock()
    run = {"runtime": {"progress_seconds": 30, "save_minutes": 30, "save_steps": None}}
    _, checkpoints = callbacks(run, steps_per_epoch=10, clock=clock)
    args = TrainingArguments(output_dir="unused", use_cpu=True, report_to="none")
    state = TrainerState(max_steps=10, global_step=0)
    checkpoints.on_train_begin(args, state, TrainerControl())
    saved = []
    for step, minutes in enumerate([10, 20, 31, 40, 55, 62, 70, 80, 93, 200], start=1):
        clock.now = 60 * minutes
        state.global_step, control = step, TrainerControl()
        checkpoints.on_step_end(args, state, control)
        saved += [step] if control.should_save else []
    assert saved == [3, 6, 9]  # at 31, 62 and 93 minutes; step 10 ends the run, which saves the model itself


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_fsdp_launches_say_so_when_the_model_loads(tmp_path):
    """transformers and accelerate read these two at model load, before the Trainer's Accelerator exists."""
    run = resolve_run({**HP, "batch_size": 8}, {"gpus": 4, "micro_batch_size": 2}, 4, "backbone", tmp_path)
    env = launch_env(run, {"PATH": "/bin"})
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"
    assert "CUDA_VISIBLE_DEVICES" not in env
    deepspeed = {**run, "runtime": {**run["runtime"], "distributed": "deepspeed"}}
    assert "ACCELERATE_USE_FSDP" not in launch_env(deepspeed, {})
    cpu = resolve_run(HP, {"gpus": 0, "micro_batch_size": 2}, 2, "backbone", tmp_path)
    assert launch_env(cpu, {})["CUDA_VISIBLE_DEVICES"] == "" and "ACCELERATE_USE_FSDP" not in launch_env(cpu, {})


# what `accelerate config` writes on a one-GPU workstation; `accelerate launch` read it for
# every setting not on its command line, and refused a two-process launch with one GPU id
ONE_GPU_DEFAULT_CONFIG = """compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
downcast_bf16: 'no'
gpu_ids: '0'
machine_rank: 0
main_training_function: main
mixed_precision: fp16
num_machines: 1
num_processes: 1
rdzv_backend: static
same_network: true
use_cpu: false
"""


def test_launch_reads_neither_the_users_accelerate_config_nor_their_accelerate_variables(tiny, data_file, tmp_path,
                                                                                         monkeypatch):
    home = tmp_path / "home"
    (home / ".cache" / "huggingface" / "accelerate").mkdir(parents=True)
    (home / ".cache" / "huggingface" / "accelerate" / "default_config.yaml").write_text(ONE_GPU_DEFAULT_CONFIG)
    monkeypatch.setenv("HOME", str(home))
    for name in ("HF_HOME", "XDG_CACHE_HOME", "ACCELERATE_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # no GPU here: fp16 would stop the Trainer
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    summary = finetune(data(data_file), tiny, tmp_path / "two", {**HP, "epochs": 1}, {"micro_batch_size": 2},
                       devices=2)
    assert (summary["devices"], summary["steps"]) == (2, 2)
    run = resolve_run(HP, {"gpus": 0, "micro_batch_size": 2}, 2, "backbone", tmp_path)
    command = launch_command(run, tmp_path / "run.json")
    assert "--standalone" in command and not any("port" in arg for arg in command)  # the store binds port 0 itself
    env = launch_env(run, {"ACCELERATE_USE_DEEPSPEED": "true", "FSDP_OFFLOAD_PARAMS": "true", "PATH": "/bin"})
    assert env["ACCELERATE_MIXED_PRECISION"] == "no" and "ACCELERATE_USE_DEEPSPEED" not in env
    assert "FSDP_OFFLOAD_PARAMS" not in env and env["PATH"] == "/bin"


def test_fsdp_ranks_other_than_0_hold_only_shapes(tiny):
    """Rank 0 reads the weights; the others build the model with storage of their own that
    they never fill (FSDP sends them their shards; tests/test_fsdp.py: each parameter its own
    address, no host memory behind it), with real buffers such as the rotary frequencies."""
    from alpacare.train import load_for_training

    loaded = load_for_training(tiny, "full", None, False, torch.bfloat16)
    empty = load_for_training(tiny, "full", None, False, torch.bfloat16, empty=True)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in empty.parameters())
    assert len({p.data_ptr() for p in empty.parameters()}) == len(list(loaded.parameters()))
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    assert [n for n, _ in empty.named_parameters()] == [n for n, _ in loaded.named_parameters()]
    buffers = dict(loaded.named_buffers())
    assert all(b.device.type == "cpu" and torch.equal(b, buffers[n]) for n, b in empty.named_buffers())
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    base = load_for_training(tiny, "lora", lora, False, torch.bfloat16, empty=True)
    assert all(p.device.type == "cpu" for p in base.parameters())
    assert {p.dtype for n, p in base.named_parameters() if "lora_" not in n} == {torch.bfloat16}


@pytest.fixture(scope="module")
def lora_run(smollm2_dir, data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "smollm2-lora"
    hp = {**HP, "method": "lora", "lr": 2e-3, "epochs": 2, "max_length": 128,
          "lora": {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}}
    return out, finetune(data(data_file, max=4, seed=3), smollm2_dir, out, hp, {"micro_batch_size": 4}, devices=1)


def test_lora_on_smollm2_merges_into_a_standalone_checkpoint(lora_run, smollm2_dir, tmp_path, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, summary = lora_run
    curve = losses(out)
    assert summary["examples"] == 4 and len(curve) == 2 and curve[-1] < curve[0]
    assert json.loads((out / "train_mixture.json").read_text()) == [
        {"dataset": "tiny", "available": 8, "taken": 4, "max": 4, "seed": 3}]
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "config.json").exists()
    # merged weights = base + adapter
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    stacked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2_dir), out / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, stacked(ids).logits, atol=1e-3)
    generates_as_transformers_does(str(out), tmp_path, monkeypatch)


def test_fingerprint_covers_adapters_and_the_base_of_quantised_checkpoints(lora_run, tiny, tmp_path):
    import shutil

    out, _ = lora_run
    merged = tmp_path / "merged"
    shutil.copytree(out, merged, ignore=shutil.ignore_patterns("model.safetensors"))  # hashing it proves nothing more
    before = fingerprint(merged)
    (merged / "train_log.jsonl").write_text("")  # training records decide no reply
    assert fingerprint(merged) == before
    (merged / "adapter" / "adapter_config.json").write_text("{}")
    assert fingerprint(merged) != before
    # lora-8bit/-4bit layout: adapter/ + base_model.json, loaded as base + adapter (GPU only)
    quantised = tmp_path / "checkpoints" / "quantised"
    shutil.copytree(out / "adapter", quantised / "adapter")
    base = tmp_path / "models" / "base"
    shutil.copytree(tiny, base)
    (quantised / BASE_MODEL_FILE).write_text(json.dumps({"base": "../../models/base", "bits": 8}))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(base / name, quantised / name)
    with_base = fingerprint(quantised)
    (base / "config.json").write_text((base / "config.json").read_text() + " ")
    assert fingerprint(quantised) != with_base  # another base, another identity
    if not torch.cuda.is_available():
        with pytest.raises(LLMError, match="adapter on a 8-bit base needs a CUDA GPU"):
            load_model(str(quantised))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the early failure is for machines without CUDA")
@pytest.mark.parametrize("method", ["lora-8bit", "lora-4bit"])
def test_quantised_methods_fail_before_any_work_without_a_gpu(method, tiny, data_file, tmp_path):
    with pytest.raises(RuntimeError, match=f"method {method} loads the base weights in .-bit with bitsandbytes, "
                                           "which needs a CUDA GPU"):
        finetune(data(data_file), tiny, tmp_path / "q", {**HP, "method": method}, RUNTIME, devices=1)
    assert list(tmp_path.iterdir()) == []


def test_public_dataset_columns_map_onto_alpaca_fields(tmp_path):
    from alpacare.stages.dataset import build_dataset

    source = tmp_path / "meadow.jsonl"
    source.write_text("".join(json.dumps({"question": r["instruction"], "answer": r["output"]}) + "\n" for r in RECORDS[:3]))
    build_dataset(tmp_path / "out.json", {"path": str(source), "columns": {"instruction": "question", "output": "answer"}})
    assert json.loads((tmp_path / "out.json").read_text()) == [
        {"instruction": r["instruction"], "input": "", "output": r["output"]} for r in RECORDS[:3]]
    with pytest.raises(ValueError, match=r"meadow.jsonl: row 0 has no text column 'instruction' for the Alpaca field 'instruction' "
                                         r"\(its columns: answer, question\)"):
        build_dataset(tmp_path / "bad.json", {"path": str(source)})
    assert not (tmp_path / "bad.json").exists()


def snakemake(project, *args):
    result = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=project, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, f"snakemake {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


@pytest.mark.workflow
def test_finetune_rule_trains_a_mixture_and_runtime_edits_retrain_nothing(tiny, tmp_path):
    import shutil

    import yaml

    from conftest import copy_project

    project = copy_project(tmp_path)
    shutil.copytree(tiny, project / "results/models/tiny")  # the backbone, already in place
    (project / "meadow.jsonl").write_text(
        "".join(json.dumps({"question": r["instruction"], "input": r["input"], "answer": r["output"]}) + "\n"
                for r in RECORDS))
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["backbones"]["tiny"] = {"hf": "offline/not-downloaded"}
    config["datasets"]["meadow"] = {"path": "meadow.jsonl", "columns": {"instruction": "question", "output": "answer"}}
    config["models"]["tiny-full"] = {"backbone": "tiny", "data": [{"dataset": "meadow", "max": 6}], "method": "full",
                                     "epochs": 1, "lr": 1e-3, "batch_size": 2, "micro_batch_size": 1, "max_length": 96,
                                     "gpus": 0, "save_steps": 2}

    def configure():
        (project / "tiny.yaml").write_text(yaml.safe_dump(config))
        return ["results/checkpoints/tiny-full", "--cores", "2", "--configfile", "tiny.yaml"]

    snakemake(project, *configure())
    checkpoint = project / "results/checkpoints/tiny-full"
    summary = json.loads((checkpoint / "train_summary.json").read_text())
    assert (summary["examples"], summary["steps"], summary["accumulation"]) == (6, 3, 2)
    assert json.loads((checkpoint / "train_mixture.json").read_text())[0]["taken"] == 6
    log = (project / "results/logs/finetune/tiny-full.log").read_text()
    assert re.search(r"train: step 3/3 \(epoch 1\.00\), loss \d+\.\d+, lr \S+, \d+\.\d+ steps/s, ~0s left", log)
    # how the batch is reached, and LoRA settings a full fine-tune does not use, retrain nothing
    config["models"]["tiny-full"].update(micro_batch_size=2, save_steps=1, save_minutes=5, gradient_checkpointing=True,
                                         lora={"r": 4})
    assert "Nothing to be done" in snakemake(project, "-n", *configure())
    config["models"]["tiny-full"]["lr"] = 2e-3
    assert "finetune" in snakemake(project, "-n", *configure())


def test_inference_spreads_a_model_over_every_gpu_its_job_was_granted(monkeypatch):
    from alpacare import checkpoints

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert checkpoints.gpu_device_map() == "auto"  # a 13B job asks for 2 GPUs and must use both
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert checkpoints.gpu_device_map() == {"": 0}


def test_examples_are_tokenized_as_stanford_alpaca_did_with_a_sentencepiece_tokenizer(tmp_path):
    """Stanford Alpaca (so AlpaCare's and medAlpaca's checkpoints) encoded prompt + response as
    one text: after "### Response:" a LLaMA tokenizer's response starts without the word-start
    marker that encoding the response alone would give it."""
    from tiny_llama import build_sp_tokenizer

    tokenizer = build_sp_tokenizer(tmp_path / "sp")
    record = {"instruction": "Define anemia.", "input": "", "output": "The answer is C: Iron."}
    prompt_text = alpaca_prompt(record["instruction"])
    example = encode_example(tokenizer, record, max_length=512)
    assert example["input_ids"] == encode_prompt(tokenizer, prompt_text + record["output"]) + [tokenizer.eos_token_id]
    n = example["labels"].count(IGNORE)
    assert example["input_ids"][:n] == encode_prompt(tokenizer, prompt_text)   # what generation feeds
    apart = tokenizer.encode(record["output"], add_special_tokens=False)
    assert example["input_ids"][n:-1] != apart   # the old encoding differed exactly here
