"""FSDP2 with the model's weights read by rank 0 only (cpu_ram_efficient_loading): two real
training processes over gloo on the CPU (tests/fsdp_cpu.py), a tiny real Llama."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alpacare.stages.finetune import finetune, prepare
from alpacare.train import checkpoint_gaps
from tiny_llama import RECORDS, build_tiny_llama

HP = {"method": "full", "epochs": 2, "lr": 3e-3, "batch_size": 4, "max_length": 96, "warmup_ratio": 0.0, "seed": 7}
CURVE_TOLERANCE = 1e-4  # as tests/test_train.py: the same examples per step, only the summation order differs
HARNESS = Path(__file__).with_name("fsdp_cpu.py")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fsdp_on_two_cpu_processes(backbone: str, data: list, out: Path, hp: dict, runtime: dict) -> tuple[Path, list]:
    """Train with two FSDP2 processes; returns (work dir, each rank's optimizer report)."""
    run, _ = prepare(data, backbone, out, hp, runtime, devices=2)
    work = Path(run["work_dir"])
    reports = out.parent / f"{out.name}.reports"
    reports.mkdir()
    env = {**os.environ, "ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true",
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HARNESS.parent.parent), str(HARNESS.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(HARNESS), str(work / "run.json"), str(reports)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return work, [json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1)]


LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@pytest.mark.parametrize("method, trainable", [
    ("full", 21),  # 2 layers x 9 + embeddings, final norm, lm_head
    ("lora", 8),  # A and B of q_proj and v_proj in 2 layers
])
def test_fsdp_trains_every_shard_on_every_rank_and_matches_one_process(method, trainable, tiny, tmp_path):
    """Each rank's optimizer holds its own shard of every trainable parameter (before the fix,
    rank 1's model was on the meta device, every data_ptr() was 0, and accelerate mapped all
    its optimizer parameters onto one: lm_head.weight, or for LoRA one adapter matrix); and
    the loss curve is one process's."""
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(RECORDS))
    data = [{"dataset": "tiny", "path": str(path)}]
    hp = {**HP, "method": method, **({"lora": LORA} if method == "lora" else {})}
    one = finetune(data, tiny, tmp_path / "one", hp, {"micro_batch_size": 2}, devices=1)
    work, reports = fsdp_on_two_cpu_processes(tiny, data, tmp_path / "two", hp,
                                              {"micro_batch_size": 2, "save_steps": 2})
    assert reports[0]["trainable"] == trainable
    for rank, report in enumerate(reports):
        assert report["optimizer_params"] == report["distinct"] == report["trainable"] == trainable, (rank, report)
        assert report["are_the_model_shards"] and report["sharded"], (rank, report)
        assert report["local_numel"] < report["full_numel"], (rank, report)  # a shard, not a whole copy
    assert reports[0]["full_numel"] == reports[1]["full_numel"]
    assert reports[0]["local_numel"] + reports[1]["local_numel"] == reports[0]["full_numel"]
    state = json.loads((work / "trained" / "train_state.json").read_text())
    reference = [json.loads(line)["loss"] for line in (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()]
    assert state["steps"] == one["steps"] == 4
    assert [h["loss"] for h in state["log"]] == pytest.approx(reference, abs=CURVE_TOLERANCE)
    # the sharded checkpoints were written by both ranks, with their metadata
    checkpoint = work / "steps" / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").exists()
    assert list(checkpoint.glob("pytorch_model_fsdp_0/.metadata")), sorted(p.name for p in checkpoint.iterdir())
    assert checkpoint_gaps(checkpoint, processes=2) is None  # what a resume would take
    (checkpoint / "optimizer_0" / ".metadata").unlink()
    assert checkpoint_gaps(checkpoint, processes=2) == (
        "optimizer state (optimizer.pt or optimizer_0/.metadata or latest), optimizer_0/.metadata")


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_ranks_other_than_0_hold_real_but_untouched_storage(tmp_path):
    """Ranks other than 0 build the model with real storage (distinct data_ptr(), which
    accelerate maps the optimizer by) that no page of host memory backs until rank 0's
    weights arrive: a 170M-parameter model (680 MB in fp32) adds almost nothing to the RSS."""
    from transformers import LlamaConfig

    from alpacare.train import load_for_training

    small, big = tmp_path / "small", tmp_path / "big"
    LlamaConfig(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=2).save_pretrained(small)
    LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                num_attention_heads=8, num_key_value_heads=8, tie_word_embeddings=False).save_pretrained(big)
    load_for_training(str(small), "full", None, False, torch.bfloat16, empty=True)  # the code it imports, first
    before = rss_bytes()
    model = load_for_training(str(big), "full", None, False, torch.bfloat16, empty=True)
    grown = rss_bytes() - before
    params = list(model.parameters())
    size = sum(p.numel() * p.element_size() for p in params)
    assert size > 600e6
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)
    assert len({p.data_ptr() for p in params}) == len(params) and 0 not in {p.data_ptr() for p in params}
    assert grown < 0.05 * size, f"RSS grew by {grown / 1e6:.0f} MB for {size / 1e6:.0f} MB of parameters"
    # the rotary frequencies (a buffer FSDP does not broadcast) are computed for real
    inv_freq = dict(model.named_buffers())["model.rotary_emb.inv_freq"]
    assert inv_freq[0].item() == 1.0 and torch.isfinite(inv_freq).all()


def test_lora_on_an_empty_rank_keeps_the_base_dtype_and_real_storage(tiny):
    from alpacare.train import load_for_training

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    loaded = load_for_training(tiny, "lora", lora, False, torch.bfloat16)
    empty = load_for_training(tiny, "lora", lora, False, torch.bfloat16, empty=True)
    assert [n for n, _ in empty.named_parameters()] == [n for n, _ in loaded.named_parameters()]
    assert all(p.device.type == "cpu" and p.data_ptr() for p in empty.parameters())
    assert {p.dtype for n, p in empty.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    assert [n for n, p in empty.named_parameters() if p.requires_grad] == \
        [n for n, p in loaded.named_parameters() if p.requires_grad]
