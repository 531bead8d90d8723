"""The protocol switch (`protocol: project | alpacare`): it changes exactly the params of the
jobs whose output AlpaCare's scripts decide differently (Alpaca-template generation, reply
judges, full fine-tunes), and AlpaCare's training adds a [PAD] token with resized embeddings."""

import json

import pytest
import torch

from alpacare import planning
from alpacare.config import load
from alpacare.stages.finetune import split_settings
from conftest import ROOT


def job_params(config: dict) -> dict:
    """Every generate, judge and finetune job's params, as the rules compute them."""
    params = {}
    for g, spec in config["generators"].items():
        for t in config["testsets"]:
            if "import" in spec and t not in spec["import"]:
                continue
            kind, _, plan, _ = planning.generator_plan(config, g, t)
            params[("generate", g, t)] = (kind, plan, planning.generation_lengths(config, g, t))
    for j in config["judges"]:
        params[("judge", j)] = planning.judge_settings(config, j)
    for m in config["models"]:
        params[("finetune", m)] = {**split_settings(config["models"][m], config["run_seed"])[0],
                                   **planning.training_protocol(config, m)}
    return params


@pytest.mark.parametrize("name", ["paper.yaml", "released.yaml"])
def test_switching_the_protocol_changes_exactly_the_jobs_alpacares_scripts_decide(name):
    config = load(ROOT / "configs" / name)
    assert config["protocol"] == "alpacare"  # the paper configs say which they use
    alpacare, project = job_params(config), job_params({**config, "protocol": "project"})
    changed = {job for job in alpacare if alpacare[job] != project[job]}
    expected = {("judge", j) for j, s in config["judges"].items() if s["method"] == "reply"}
    expected |= {("finetune", m) for m, s in config["models"].items() if s.get("method", "full") == "full"}
    expected |= {job for job, (kind, _, _) in ((k, v) for k, v in alpacare.items() if k[0] == "generate")
                 if kind == "alpaca"}
    assert changed == expected and expected
    for job in changed:
        if job[0] == "generate":
            assert alpacare[job][1]["protocol"] == "alpacare" and alpacare[job][2] == (None, 1024)
            assert "protocol" not in project[job][1]
        elif job[0] == "judge":
            assert alpacare[job]["scoring"] == "alpacare" and alpacare[job]["reasks"] == 0 and "scoring" not in project[job]
        else:
            assert alpacare[job]["pad_token"] == "[PAD]" and "pad_token" not in project[job]


def test_the_default_run_keeps_the_projects_protocol():
    config = load(ROOT / "config.yaml")
    assert config["protocol"] == "project"
    assert all("scoring" not in planning.judge_settings(config, j) for j in config["judges"])


def test_alpacares_training_adds_a_pad_token_and_resizes_the_embeddings(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alpacare.train import add_pad_token
    from tiny_llama import build_tiny_llama

    path = build_tiny_llama(tmp_path / "llama")
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    assert tokenizer.pad_token is None  # LLaMA's has none: today padding is EOS
    rows = model.get_input_embeddings().weight.shape[0]
    assert add_pad_token(tokenizer, model, "[PAD]")
    assert tokenizer.pad_token == "[PAD]" and tokenizer.pad_token_id == len(tokenizer) - 1
    for embeddings in (model.get_input_embeddings(), model.get_output_embeddings()):
        weight = embeddings.weight
        assert weight.shape[0] == max(rows, len(tokenizer))
        assert torch.allclose(weight[tokenizer.pad_token_id], weight[:-1].mean(dim=0))
    assert not add_pad_token(tokenizer, model, "[PAD]")  # a tokenizer with a pad token is left alone


def test_a_full_fine_tune_under_alpacares_protocol_saves_the_pad_token_it_trained_with(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    from alpacare.stages.finetune import finetune
    from tiny_llama import RECORDS, build_tiny_llama

    path = build_tiny_llama(tmp_path / "llama")
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps(RECORDS))
    hp = {"method": "full", "epochs": 1, "lr": 1e-3, "batch_size": 4, "max_length": 96, "warmup_ratio": 0.0, "seed": 7,
          "pad_token": "[PAD]"}
    out = tmp_path / "tuned"
    finetune([{"dataset": "tiny", "path": str(data)}], path, out, hp, {"micro_batch_size": 2}, devices=1)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.pad_token == "[PAD]"
    assert AutoConfig.from_pretrained(out).vocab_size == len(tokenizer) == len(AutoTokenizer.from_pretrained(path)) + 1
    assert json.loads((out / "train_config.json").read_text())["hp"]["pad_token"] == "[PAD]"
