"""Backbones from the hub: the files fetched at a pinned revision, and a published LoRA adapter
(Baize-Healthcare) merged into its base with peft, on a tiny real Llama."""

import shutil
from pathlib import Path

import pytest
import torch

from alpacare import models
from tiny_llama import build_tiny_llama


def test_safetensors_are_preferred_and_old_checkpoints_bring_their_pytorch_weights():
    new = ["config.json", "model-00001-of-00002.safetensors", "pytorch_model-00001-of-00002.bin", "tokenizer.model"]
    assert "*.safetensors" in models.weight_patterns(new) and not any(".bin" in p for p in models.weight_patterns(new))
    old = ["config.json", "pytorch_model-00001-of-00003.bin", "training_args.bin", "tokenizer.model"]
    patterns = models.weight_patterns(old)
    assert "pytorch_model*.bin" in patterns and "*.safetensors" not in patterns
    assert "training_args.bin" not in patterns and "*.bin" not in patterns   # training state is never fetched
    assert "adapter_model.bin" in models.weight_patterns(["adapter_config.json", "adapter_model.bin"])


@pytest.fixture(scope="module")
def base_and_adapter(tmp_path_factory):
    """A tiny Llama and a LoRA adapter for it whose weights are not the identity (peft starts B at zero)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hub")
    base = build_tiny_llama(root / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.5)
    model.save_pretrained(root / "adapter")
    return root / "base", root / "adapter"


def test_a_published_adapter_is_merged_into_one_model_directory(base_and_adapter, tmp_path, monkeypatch):
    """prepare_backbone for {hf, revision, adapter: {hf, revision}}: both repositories fetched at
    their revisions (here from local folders: the hub is not reachable from the tests), merged,
    and the result loads as an ordinary model that computes what base + adapter computes."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, adapter = base_and_adapter
    hub = {("org/base", "a" * 40): base, ("org/adapter", "b" * 40): adapter}
    asked = []

    def list_repo_files(repo, revision=None):
        return [p.name for p in hub[(repo, revision)].iterdir()]

    def snapshot_download(repo, revision=None, local_dir=None, allow_patterns=()):
        asked.append((repo, revision))
        shutil.copytree(hub[(repo, revision)], local_dir)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    out = tmp_path / "baize"
    models.prepare_backbone({"hf": "org/base", "revision": "a" * 40,
                             "adapter": {"hf": "org/adapter", "revision": "b" * 40}}, out)
    assert asked == [("org/base", "a" * 40), ("org/adapter", "b" * 40)]
    assert not (tmp_path / "baize.parts").exists() and not (out / "adapter_config.json").exists()

    ids = AutoTokenizer.from_pretrained(out)("Name two symptoms of influenza.", return_tensors="pt").input_ids
    with torch.inference_mode():
        merged = AutoModelForCausalLM.from_pretrained(out)(ids).logits
        reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter))(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base)(ids).logits
    assert torch.allclose(merged, reference, atol=1e-4)
    assert not torch.allclose(merged, plain, atol=1e-2)   # the adapter changed the model


def test_legacy_llama_class_names_are_modernised(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LLaMAForCausalLM"], "model_type": "llama"}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LLaMATokenizer", "bos_token": "<s>"}))
    assert models.modern_llama_names(tmp_path) == ["config.json", "tokenizer_config.json"]
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>"}
    assert models.modern_llama_names(tmp_path) == []   # already modern: nothing rewritten


def test_a_model_kept_in_a_subfolder_is_fetched_from_it(tmp_path, monkeypatch):
    """zl111/ChatDoctor keeps its model in result/: only those files are fetched, and they land at the
    top of the backbone directory, which then loads as an ordinary model (hub served from a folder)."""
    from transformers import AutoModelForCausalLM

    repo = tmp_path / "repo"
    build_tiny_llama(repo / "result")
    (repo / "README.md").write_text("not a model file")
    (repo / "other").mkdir()
    (repo / "other" / "pytorch_model.bin").write_bytes(b"not these weights")
    asked = []

    def list_repo_files(repo_id, revision=None):
        return sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())

    def snapshot_download(repo_id, revision=None, local_dir=None, allow_patterns=()):
        import fnmatch

        asked.extend(allow_patterns)
        for name in list_repo_files(repo_id):
            if any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(repo / name, Path(local_dir) / name)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    out = tmp_path / "chatdoctor"
    models.prepare_backbone({"hf": "zl111/ChatDoctor", "subfolder": "result", "revision": "c" * 40}, out)
    assert asked and all(p.startswith("result/") for p in asked)
    assert (out / "config.json").exists() and not (out / "result").exists() and not (out / "other").exists()
    AutoModelForCausalLM.from_pretrained(out)


def test_an_unpinned_placeholder_stops_the_backbone_before_any_download(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda *a, **k: pytest.fail("the hub was asked"))
    with pytest.raises(ValueError, match="zl111/ChatDoctor: no pinned revision, so nothing is downloaded: UNPINNED: pin"):
        models.prepare_backbone({"hf": "zl111/ChatDoctor", "revision": "UNPINNED: pin a 40-hex commit"}, tmp_path / "m")
