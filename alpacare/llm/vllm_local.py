"""vLLM for local checkpoints on GPU nodes (`generation.backend: vllm`): the same requests
and responses as the transformers provider, for generation only (greedy or sampled; no
constrained fields, no choice scoring). vllm is imported only when this backend is chosen;
it is not a dependency of the project (pip install vllm on the GPU node)."""

from __future__ import annotations

from ..checkpoints import fingerprint
from .base import LLMError, Provider, Request, Response


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

    def __init__(self, model_dir: str):
        self.model_dir = str(model_dir)
        self._engine = None

    def identity(self) -> dict:
        # a different engine may decode differently: its version is part of a reply's identity
        return {"weights": fingerprint(self.model_dir), "vllm": _vllm().__version__}

    def engine(self):
        if self._engine is None:
            import torch

            # tensor parallel over every GPU the job was granted (two for a 13B model)
            self._engine = _vllm().LLM(model=self.model_dir, dtype="bfloat16", seed=0,
                                       tensor_parallel_size=max(1, torch.cuda.device_count()))
        return self._engine

    def complete_batch(self, requests: list[Request]) -> list[Response]:
        vllm = _vllm()
        for r in requests:
            if r.model != self.model_dir:
                raise LLMError(f"request for model {r.model!r} sent to the vLLM provider of {self.model_dir!r}")
            if r.fields or r.choices:
                raise LLMError("the vLLM backend only generates (no constrained fields, no choice scoring)")
        engine = self.engine()
        tokenizer = engine.get_tokenizer()
        prompts = [r.prompt if r.prompt is not None else tokenizer.apply_chat_template(
            [{"role": role, "content": content} for role, content in r.messages], add_generation_prompt=True, tokenize=False)
            for r in requests]
        params = [vllm.SamplingParams(temperature=r.temperature, top_p=r.top_p, presence_penalty=r.presence_penalty,
                                      max_tokens=r.max_tokens, stop=list(r.stop) or None, seed=r.seed)
                  for r in requests]
        results = engine.generate(prompts, params, use_tqdm=False)
        return [Response(text=out.outputs[0].text, finish_reason="length" if out.outputs[0].finish_reason == "length" else "stop",
                         input_tokens=len(out.prompt_token_ids), output_tokens=len(out.outputs[0].token_ids))
                for out in results]
