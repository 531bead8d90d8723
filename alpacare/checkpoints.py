"""Loading a model directory for inference (a backbone or a fine-tuned checkpoint), and the
fingerprint that gives its replies their cache identity."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .llm.base import LLMError

_MODELS: dict[str, tuple] = {}


def load_model(path: str):
    """Model and tokenizer of an HF directory, loaded once per process."""
    if path not in _MODELS:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not Path(path).is_dir():
            raise LLMError(f"local model directory not found: {path}")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        _MODELS[path] = (model, tokenizer)
    return _MODELS[path]


def fingerprint(path: str | Path) -> str:
    """sha256 over the files that decide a model's replies (weights, config, tokenizer): a
    retrained checkpoint at the same path gets a new cache identity, so its replies are never
    confused with the old ones. Training logs, which hold timings, are left out."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(("train_", "."))):
        digest.update(file.name.encode())
        with open(file, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()
