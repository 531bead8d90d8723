"""vLLM for local checkpoints on GPU nodes (`generation.backend: vllm`): the same requests
and responses as the transformers provider, for generation only (greedy or sampled; no
constrained fields, no choice scoring). vllm is imported only when this backend is chosen;
it is not a dependency of the project (pip install vllm on the GPU node).

- Prompts go in as token ids made by the transformers path's own function (llm.local.prompt_ids):
  a chat template that writes BOS itself, or the Alpaca prompt's BOS, is not doubled by the
  special tokens vLLM would add to a text prompt.
- A job's requests all go in one generate call: vLLM batches continuously, so a long reply
  does not hold up a wave of short ones (the client hands them over at once: schedules_batches).
  They are all in flight together, so a job killed midway asks them all again.
- A lora-8bit/-4bit checkpoint (adapter/ + base_model.json, no weights of its own) is served
  as its base in 16-bit with the adapter applied to every request (enable_lora, LoRARequest).
  The transformers path runs that base quantised to 8/4 bits, as it was trained; the 16-bit
  base gives somewhat different replies. Replies are cached per backend (the provider's name
  is part of the key), so the two are never mixed up.
- dtype follows the job's GPUs (alpacare.hardware): bfloat16 from Ampere on, float16 before,
  where vLLM refuses bfloat16. Asking that question initialises no CUDA (NVML answers): vLLM
  starts its workers by fork then; once CUDA is up it must use spawn, whose children re-import
  the job's script (alpacare.snake.setup makes that harmless too)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .. import hardware
from ..cluster import largest_tensor_parallel
from ..checkpoints import adapter_checkpoint, base_dir, fingerprint, model_identity
from .base import LLMError, Provider, Request, Response

# Part of every vLLM reply's cache key, like llm.local's DECODER_VERSION: bump it when a change
# here changes what a request returns (2: prompts as token ids; 1 sent text and got a second BOS)
PROMPTING_VERSION = 2
VLLM_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts

log = logging.getLogger("alpacare.llm")


def tensor_parallel_size(model_dir: Path, gpus: int) -> int:
    """vLLM's tensor-parallel size for the model in `model_dir` (its config.json) on `gpus` GPUs."""
    config = json.loads((model_dir / "config.json").read_text())
    heads = config.get("num_attention_heads")
    if heads is None:
        raise LLMError(f"{model_dir / 'config.json'}: no num_attention_heads, so no tensor-parallel size can be chosen")
    return largest_tensor_parallel(heads, config.get("num_key_value_heads") or heads, gpus)


def _vllm():
    try:
        import vllm
    except ImportError:
        raise LLMError("generation.backend is vllm, but the vllm package is not installed here: "
                       "pip install vllm on the GPU node, or use backend: transformers") from None
    return vllm


class VLLMProvider(Provider):
    name = "vllm-local"
    batched = True
    schedules_batches = True

    def __init__(self, model_dir: str):
        self.model_dir = str(model_dir)
        self._engine = None
        self._tokenizer = None
        self._lora = None

    def identity(self) -> dict:
        # a different engine may decode differently: its version is part of a reply's identity,
        # and so are the precision and the tensor-parallel size (reductions split across GPUs
        # sum in another order); the weights by content (model_identity)
        return {"weights": model_identity(self.model_dir), "vllm": _vllm().__version__, "prompting": PROMPTING_VERSION,
                "precision": hardware.precision(), "tensor_parallel": self._shards()[0]}

    def _served_dir(self) -> Path:
        """The weights vLLM loads: a LoRA checkpoint's base model (the adapter rides on it)."""
        return base_dir(self.model_dir) if adapter_checkpoint(self.model_dir) is not None else Path(self.model_dir)

    def _shards(self) -> tuple[int, int]:
        """(tensor-parallel size, GPUs granted): the granted GPUs the attention heads divide among
        (two for a 13B model; of three GPUs, 40 heads use two)."""
        granted = hardware.visible_gpus()
        return tensor_parallel_size(self._served_dir(), granted), granted

    def legacy_identity(self) -> dict:
        return {"weights": fingerprint(self.model_dir), "vllm": _vllm().__version__, "prompting": PROMPTING_VERSION}

    def engine(self):
        if self._engine is None:
            vllm = _vllm()
            precision = hardware.precision()
            if precision not in VLLM_DTYPES:
                raise LLMError(f"{self.model_dir}: the vLLM backend needs a CUDA GPU and this job sees none "
                               "(generation.backend: transformers runs on the CPU)")
            lora = adapter_checkpoint(self.model_dir) is not None
            model = str(self._served_dir())
            shards, granted = self._shards()
            if shards < granted:
                log.warning("%s: %d GPU(s) granted, vLLM uses %d (tensor parallelism needs a count the attention "
                            "heads divide by)", self.model_dir, granted, shards)
            kwargs = {"dtype": VLLM_DTYPES[precision], "seed": 0, "tensor_parallel_size": shards}
            if lora:
                adapter = Path(self.model_dir) / "adapter"
                rank = json.loads((adapter / "adapter_config.json").read_text())["r"]
                kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=next(r for r in LORA_RANKS if r >= rank))
                from vllm.lora.request import LoRARequest

                self._lora = LoRARequest("adapter", 1, str(adapter))
            self._engine = vllm.LLM(model=model, **kwargs)
        return self._engine

    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)  # the checkpoint's, as training saved it
        return self._tokenizer

    def complete_batch(self, requests: list[Request]) -> list[Response]:
        from .local import prompt_ids

        vllm = _vllm()
        for r in requests:
            if r.model != self.model_dir:
                raise LLMError(f"request for model {r.model!r} sent to the vLLM provider of {self.model_dir!r}")
            if r.fields or r.choices:
                raise LLMError("the vLLM backend only generates (no constrained fields, no choice scoring)")
        engine = self.engine()
        prompts = [{"prompt_token_ids": prompt_ids(self.tokenizer(), r)} for r in requests]
        params = [vllm.SamplingParams(temperature=r.temperature, top_p=r.top_p, presence_penalty=r.presence_penalty,
                                      max_tokens=r.max_tokens, stop=list(r.stop) or None, seed=r.seed,
                                      **({"top_k": r.top_k} if r.top_k else {}))
                  for r in requests]
        results = engine.generate(prompts, params, use_tqdm=False, lora_request=self._lora)
        return [Response(text=out.outputs[0].text, finish_reason="length" if out.outputs[0].finish_reason == "length" else "stop",
                         input_tokens=len(out.prompt_token_ids), output_tokens=len(out.outputs[0].token_ids))
                for out in results]
