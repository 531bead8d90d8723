"""The training memory plan (alpacare.cluster.finetune_gpu_plan) sizes the logits from the
backbone's own vocabulary: Llama 3's 128,256 words need four times LLaMA's 32,000."""

import copy
import json

import pytest

from alpacare import cluster
from alpacare.config import ConfigError, load
from conftest import ROOT

LLAMA_3_VOCAB = 128_256


@pytest.fixture
def paper():
    return copy.deepcopy(load(ROOT / "configs" / "paper.yaml"))


def test_a_llama_3_vocabulary_that_does_not_fit_stops_where_llamas_fits(paper, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no prepared backbone here: 32,000 words
    llama_2 = cluster.finetune_gpu_plan(paper, "alpacare-llama-2-7b")  # 4 GPUs of 40 GB, 4 x 1024 tokens each
    assert llama_2["gradient_checkpointing"] and cluster.backbone_vocab(paper, "llama-2-7b") == 32_000
    paper["backbones"]["llama-2-7b"]["vocab_size"] = LLAMA_3_VOCAB  # as for meta-llama/Meta-Llama-3-8B
    with pytest.raises(ConfigError, match=r"models\.alpacare-llama-2-7b: training 7B parameters \(full\) on 4 GPU"
                                          r"\(s\) needs ~38 GB per GPU even with activation checkpointing "
                                          r"\(micro_batch_size 4, max_length 1024, a vocabulary of 128,256 words\)"):
        cluster.finetune_gpu_plan(paper, "alpacare-llama-2-7b")
    paper["cluster"]["gpu_memory_gb"] = 80
    plan = cluster.finetune_gpu_plan(paper, "alpacare-llama-2-7b")
    logits = 4 * 1024 * (LLAMA_3_VOCAB - 32_000) * cluster.LOGIT_BYTES_PER_WORD / 1e9
    assert plan["gpu_gb"] == pytest.approx(cluster.training_gpu_gb(7.0, "full", 4, 4, 1024, False) + logits)


def test_the_prepared_backbones_config_tells_the_vocabulary(paper, tmp_path, monkeypatch):
    """In the training job the backbone is downloaded: its config.json decides."""
    monkeypatch.chdir(tmp_path)
    prepared = tmp_path / "results" / "models" / "llama-2-7b"
    prepared.mkdir(parents=True)
    (prepared / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": LLAMA_3_VOCAB}))
    assert cluster.backbone_vocab(paper, "llama-2-7b") == LLAMA_3_VOCAB
    with pytest.raises(ConfigError, match="a vocabulary of 128,256 words"):
        cluster.finetune_gpu_plan(paper, "alpacare-llama-2-7b")
    (prepared / "config.json").write_text("{not json")  # a half-written file: the default, not a crash
    assert cluster.backbone_vocab(paper, "llama-2-7b") == cluster.DEFAULT_VOCAB
