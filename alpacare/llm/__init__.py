"""The one LLM layer: every call of every stage goes through `make_llm(...).run(requests)`."""

from __future__ import annotations

from .base import LLMError, Provider, Request, Response, RetryableError
from .cache import Cache
from .client import LLM, CacheMiss, Ledger

__all__ = ["LLM", "Cache", "CacheMiss", "Ledger", "LLMError", "Provider", "Request", "Response", "RetryableError", "make_llm"]


def make_provider(spec: dict, model_dir: str | None = None) -> Provider:
    """spec: one entry of the config's `llms`; model_dir: the local model's directory."""
    kind = spec["provider"]
    if kind == "local" and spec.get("backend") == "vllm":
        from .vllm_local import VLLMProvider  # GPU nodes only; vllm is imported when it is first used

        return VLLMProvider(model_dir)
    if kind == "local":
        from .local import LocalProvider

        if not model_dir:
            raise LLMError("the local provider needs a model directory")
        return LocalProvider(model_dir)
    if kind == "openai":
        from .openai_api import OpenAIProvider

        return OpenAIProvider(base_url=spec.get("base_url"), api_key_env=spec.get("api_key_env"))
    if kind == "anthropic":
        from .anthropic_api import AnthropicProvider

        return AnthropicProvider(base_url=spec.get("base_url"), api_key_env=spec.get("api_key_env"))
    raise LLMError(f"unknown provider {kind!r} (known: local, openai, anthropic)")


def make_llm(name: str, spec: dict, settings: dict, model_dir: str | None = None) -> LLM:
    """name/spec: an entry of the config's `llms`; settings: the config's `llm` section."""
    provider = make_provider(spec, model_dir)
    cache = Cache(settings["cache"]) if settings.get("cache") else None
    return LLM(
        provider,
        cache,
        name=name,
        replay_only=settings.get("replay_only", False),
        max_concurrency=spec.get("max_concurrency", settings.get("max_concurrency", 4)),
        max_retries=settings.get("max_retries", 5),
        batch_size=spec.get("batch_size", settings.get("batch_size", 32)),
        price=spec.get("price"),
    )


def model_id(spec: dict, model_dir: str | None) -> str:
    """What goes into Request.model: the API's model name, or the local directory."""
    return model_dir if spec["provider"] == "local" else spec["model"]
