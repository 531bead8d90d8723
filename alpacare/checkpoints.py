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
    with the old ones. Training records (train_*: logs with timings, the loss figure) are left out.
    Every byte counts, the library versions the JSON files name too: the identity of local
    replies cached before canonical keys (model_identity is today's)."""
    return fingerprints(path)[1]


def model_identity(path: str | Path) -> str:
    """fingerprint without what the libraries that wrote the files add: a JSON file counts by
    its content (`transformers_version`, `_name_or_path` and the like left out, `torch_dtype`
    and `dtype` one name, key order and spacing ignored), so an upgrade of transformers that
    rewrites config.json keeps every cached reply; a different weight, setting or token does not."""
    return fingerprints(path)[0]


# written by the library, not deciding a reply: its version, where the files were loaded from
LIBRARY_FIELDS = {"transformers_version", "_commit_hash", "_name_or_path", "peft_version"}


def _canonical_json(data: bytes) -> bytes | None:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None

    def clean(v):
        if isinstance(v, dict):
            return {("dtype" if k == "torch_dtype" else k): clean(x) for k, x in v.items() if k not in LIBRARY_FIELDS}
        return [clean(x) for x in v] if isinstance(v, list) else v

    return json.dumps(clean(value), sort_keys=True, separators=(",", ":")).encode()


_FINGERPRINTS: dict[tuple, tuple[str, str]] = {}


def fingerprints(path: str | Path) -> tuple[str, str]:
    """(model_identity, fingerprint) of a model directory, its files read once (a 7B model's
    weights are 13 GB), remembered while no file changes."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(("train_", ".")) for part in p.relative_to(root).parts))
    base_file = root / BASE_MODEL_FILE
    # a base + adapter checkpoint's identity follows its base's, which lies elsewhere: part of the stamp
    base = fingerprints(base_dir(root)) if base_file.exists() else None
    stamp = (str(root.resolve()), tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files), base)
    if stamp in _FINGERPRINTS:
        return _FINGERPRINTS[stamp]
    canonical, legacy = hashlib.sha256(), hashlib.sha256()
    for file in files:
        name = file.relative_to(root).as_posix().encode()
        canonical.update(name)
        legacy.update(name)
        if file.suffix == ".json" and file.stat().st_size < 64 * 2**20:
            data = file.read_bytes()
            legacy.update(hashlib.sha256(data).digest())
            cleaned = _canonical_json(data)
            canonical.update(hashlib.sha256(data if cleaned is None else cleaned).digest())
        else:
            with open(file, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").digest()
            legacy.update(digest)
            canonical.update(digest)
    if base is not None:
        base_canonical, base_legacy = base
        canonical.update(base_canonical.encode())
        legacy.update(base_legacy.encode())
    _FINGERPRINTS[stamp] = canonical.hexdigest(), legacy.hexdigest()
    return _FINGERPRINTS[stamp]
