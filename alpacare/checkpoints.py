"""Loading a model directory for inference (a backbone or a fine-tuned checkpoint), and the
fingerprint that gives its replies their cache identity.

A checkpoint is either a standalone HF model (backbones, full and merged LoRA fine-tunes) or,
for LoRA on a quantised base (lora-8bit, lora-4bit), `adapter/` plus base_model.json naming
the base directory and its bits: loaded as the quantised base with the adapter on top."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from . import hardware
from .llm.base import LLMError

_MODELS: dict[str, tuple] = {}
BASE_MODEL_FILE = "base_model.json"  # {"base": backbone dir relative to the checkpoint, "bits": 8 | 4}


def load_model(path: str):
    """Model and tokenizer of an HF directory, loaded once per process, in the precision of
    the job's GPUs (alpacare.hardware: bf16 from Ampere on, fp16 before; fp32 on a CPU)."""
    if path not in _MODELS:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not Path(path).is_dir():
            raise LLMError(f"local model directory not found: {path}")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = hardware.dtype()
        tokenizer = AutoTokenizer.from_pretrained(path)
        base_file = Path(path) / BASE_MODEL_FILE
        if base_file.exists():
            model = _load_base_and_adapter(path, json.loads(base_file.read_text()), dtype)
        else:
            placement = {"device_map": gpu_device_map()} if device == "cuda" else {}
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **placement).eval()
        _MODELS[path] = (model, tokenizer)
    return _MODELS[path]


def load_tokenizer(path: str):
    """The tokenizer of an HF directory alone (counting prompt tokens needs no weights)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def gpu_device_map():
    """Every GPU the job was granted: a cluster job for a 13B model gets two (its bf16 weights
    alone fill most of one 40 GB GPU), and accelerate spreads the layers over them (the
    decoder then keeps each cache layer's row selection on that layer's GPU: llm.local)."""
    return "auto" if torch.cuda.device_count() > 1 else {"": 0}


def adapter_checkpoint(path: str | Path) -> dict | None:
    """base_model.json of a base + adapter checkpoint ({"base", "bits"}); None for a standalone model."""
    base_file = Path(path) / BASE_MODEL_FILE
    return json.loads(base_file.read_text()) if base_file.exists() else None


def base_dir(checkpoint: str | Path) -> Path:
    """The base model directory of a base + adapter checkpoint."""
    base = json.loads((Path(checkpoint) / BASE_MODEL_FILE).read_text())["base"]
    return (Path(checkpoint) / base).resolve()


def _load_base_and_adapter(path: str, base: dict, dtype):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise LLMError(f"{path}: a LoRA adapter on a {base['bits']}-bit base needs a CUDA GPU (bitsandbytes)")
    quantisation = (BitsAndBytesConfig(load_in_8bit=True) if base["bits"] == 8 else
                    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=dtype))
    model = AutoModelForCausalLM.from_pretrained(base_dir(path), dtype=dtype, quantization_config=quantisation,
                                                 device_map=gpu_device_map())
    return PeftModel.from_pretrained(model, str(Path(path) / "adapter")).eval()


def fingerprint(path: str | Path) -> str:
    """sha256 over the files that decide a model's replies (weights, config, tokenizer, a LoRA
    adapter, and for base + adapter checkpoints the base's own fingerprint): a retrained
    checkpoint at the same path gets a new cache identity, so its replies are never confused
    with the old ones. Training records (train_*: logs with timings, the loss figure) are left out."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        name = file.relative_to(root).as_posix()
        if any(part.startswith(("train_", ".")) for part in file.relative_to(root).parts):
            continue
        digest.update(name.encode())
        with open(file, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    base_file = root / BASE_MODEL_FILE
    if base_file.exists():
        digest.update(fingerprint(base_dir(root)).encode())
    return digest.hexdigest()
