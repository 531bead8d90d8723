"""The one LLM layer: every call of every stage goes through `make_llm(...).run(requests)`."""

from __future__ import annotations

from .base import (AuthenticationError, BudgetExceededError, CircuitOpenError, LLMError, Provider, Request, RequestRejected,
                   Response, RetryableError, RunStopped)
from .cache import Cache
from .client import LLM, CacheMiss, Ledger

__all__ = ["LLM", "AuthenticationError", "BudgetExceededError", "Cache", "CacheMiss", "CircuitOpenError", "Ledger", "LLMError", "Provider", "Request",
           "RequestRejected", "Response", "RetryableError", "RunStopped", "make_llm"]


def make_provider(spec: dict, model_dir: str | None = None, progress_seconds: float = 10.0) -> Provider:
    """spec: one entry of the config's `llms`; model_dir: the local model's directory;
    progress_seconds: how often a local decode loop logs its progress."""
    kind = spec["provider"]
    if kind == "local" and spec.get("backend") == "vllm":
        from .vllm_local import VLLMProvider  # GPU nodes only; vllm is imported when it is first used

        return VLLMProvider(model_dir)
    if kind == "local":
        from .local import LocalProvider

        if not model_dir:
            raise LLMError("the local provider needs a model directory")
        return LocalProvider(model_dir, progress_seconds=progress_seconds)
    if kind == "openai":
        from .openai_api import OpenAIProvider

        return OpenAIProvider(**_api_options(spec))
    if kind == "anthropic":
        from .anthropic_api import AnthropicProvider

        return AnthropicProvider(**_api_options(spec))
    raise LLMError(f"unknown provider {kind!r} (known: local, openai, anthropic)")


def _api_options(spec: dict) -> dict:
    return dict(base_url=spec.get("base_url"), api_key_env=spec.get("api_key_env"), keyless=spec.get("keyless", False),
                timeout=spec.get("timeout", {}), model=spec.get("model"))


def make_llm(name: str, spec: dict, settings: dict, model_dir: str | None = None, rule: str = "") -> LLM:
    """name/spec: an entry of the config's `llms`; settings: the config's `llm` section (its
    schema defaults apply when a key is absent, as they do after validation)."""
    provider = make_provider(spec, model_dir, progress_seconds=settings.get("progress_seconds", 10.0))
    cache = Cache(settings["cache"], label=rule or name) if settings.get("cache") else None
    breaker = settings.get("circuit_breaker", {})
    return LLM(
        provider,
        cache,
        name=name,
        rule=rule,
        replay_only=settings.get("replay_only", False),
        max_concurrency=spec.get("max_concurrency", settings.get("max_concurrency", 4)),
        max_retries=settings.get("max_retries", 5),
        backoff_seconds=settings.get("backoff_seconds", 1.0),
        max_backoff_seconds=settings.get("max_backoff_seconds", 60.0),
        total_timeout=spec.get("timeout", {}).get("total"),
        batch_size=spec.get("batch_size", settings.get("batch_size", 32)),
        price=spec.get("price"),
        rpm=spec.get("rpm"),
        tpm=spec.get("tpm"),
        breaker_failures=breaker.get("failures", 10),
        breaker_rate=breaker.get("rate", 0.5),
        breaker_window=breaker.get("window", 100),
        budget_usd=settings.get("budget_usd"),
        ledger_path=settings.get("ledger"),
        max_failed_fraction=settings.get("max_failed_fraction", 0.0),
        progress_seconds=settings.get("progress_seconds", 10.0),
    )


def model_id(spec: dict, model_dir: str | None) -> str:
    """What goes into Request.model: the API's model name, or the local directory."""
    return model_dir if spec["provider"] == "local" else spec["model"]
