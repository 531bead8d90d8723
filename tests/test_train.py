"""Fine-tuning: real training runs of a tiny random-initialised Llama (BOS-adding tokenizer)
and of the bundled SmolLM2, on CPU."""

import json
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
from alpacare.stages.finetune import finetune, split_settings
from alpacare.stages.generate import generate_outputs
from alpacare.template import adds_bos, alpaca_prompt, encode_prompt
from alpacare.train import IGNORE, accumulation_steps, encode_all, encode_example
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
        response = tokenizer.encode(record["output"], add_special_tokens=False) + [tokenizer.eos_token_id]
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
    assert config["hp"]["lr"] == HP["lr"] and config["runtime"]["accumulation"] == 2 and config["runtime"]["bf16"] is False
    assert json.loads((out / "train_mixture.json").read_text())[0] | {"seed": 0} == {
        "dataset": "tiny", "available": 8, "taken": 8, "max": None, "seed": 0}
    for name in ("model.safetensors", "config.json", "tokenizer.json", "train_loss.png", "train_summary.json"):
        assert (out / name).exists(), name
    assert not Path(f"{out}.resume").exists()  # the resumable work dir goes once the checkpoint is out


def generates_as_transformers_does(checkpoint: str, tmp_path, monkeypatch):
    """The generate stage (kind alpaca) on a checkpoint gives the same greedy tokens as
    transformers' own generate from the training prompt (BOS first where the tokenizer has one)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.chdir(tmp_path)  # the stage writes its ledger shard under results/ledger/
    testset = tmp_path / "testset.jsonl"
    items = [{"id": 0, "instruction": "What usually causes a fever?", "input": ""},
             {"id": 1, "instruction": "Summarize the note.", "input": "A cough."}]
    testset.write_text("".join(json.dumps(t) + "\n" for t in items))
    generate_outputs(testset, tmp_path / "out.json", generator="tuned", kind="alpaca", spec={"provider": "local"},
                     settings={"cache": None}, model_dir=checkpoint, max_new_tokens=6)
    outputs = json.loads((tmp_path / "out.json").read_text())
    model, tokenizer = AutoModelForCausalLM.from_pretrained(checkpoint), AutoTokenizer.from_pretrained(checkpoint)
    for item, output in zip(items, outputs):
        ids = encode_prompt(tokenizer, alpaca_prompt(item["instruction"], item["input"]))
        generated = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)[0, len(ids):]
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


def test_two_processes_match_one_with_the_same_global_batch(full_run, tiny, data_file, tmp_path):
    out = tmp_path / "tiny-2proc"
    summary = finetune(data(data_file), tiny, out, HP, RUNTIME, devices=2)  # accelerate launch, gloo on CPU
    assert (summary["devices"], summary["accumulation"]) == (2, 1)
    reference_dir, _ = full_run
    assert losses(out) == pytest.approx(losses(reference_dir), abs=CURVE_TOLERANCE)


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
    assert "step 3/3" in (project / "results/logs/finetune/tiny-full.log").read_text()
    # how the batch is reached, and LoRA settings a full fine-tune does not use, retrain nothing
    config["models"]["tiny-full"].update(micro_batch_size=2, save_steps=1, gradient_checkpointing=True,
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
