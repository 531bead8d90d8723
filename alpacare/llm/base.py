"""The one request and response type that every provider speaks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


class LLMError(Exception):
    """A call that cannot succeed as asked (bad request, auth, unsupported feature)."""


class RetryableError(LLMError):
    """A call that may succeed later (rate limit, overload, outage, timeout)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RequestRejected(LLMError):
    """The endpoint refused this request itself (400, 404 for a model, 413, 422, a content
    filter): no retry can fix it, and it says nothing about the endpoint's health, so it fails
    the item at once and the circuit breaker never counts it."""


class RunStopped(RuntimeError):
    """The client stopped making new calls (what completed is cached and in the ledger)."""


class AuthenticationError(LLMError, RunStopped):
    """The endpoint refused the key (401/403): every call would fail alike, so the stage stops
    at once, naming the key's environment variable."""


class CircuitOpenError(RunStopped):
    """An endpoint failed every call for a while: stop the stage instead of grinding on."""


class BudgetExceededError(RunStopped):
    """The next paid call could take the spend recorded in the ledger past `llm.budget_usd`."""


@dataclass(frozen=True)
class Request:
    """One LLM call. Exactly one of `messages` (chat) or `prompt` (raw completion) is set.

    `fields` asks for constrained decoding: the reply is forced to be the lines
    `Name: value` for each (name, max_tokens) in order, each value ending at a newline.
    `choices` asks for scoring instead of generation: the log-probability of each choice
    as the continuation of the prompt. Both are supported by the local provider only.
    """

    model: str
    messages: tuple[tuple[str, str], ...] | None = None  # (role, content) pairs
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    top_k: int | None = None  # sample from the k likeliest tokens only (local models: medAlpaca's USMLE decoding)
    fields: tuple[tuple[str, int], ...] = ()
    choices: tuple[str, ...] = ()

    def __post_init__(self):
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a Request needs exactly one of messages or prompt")

    @staticmethod
    def chat(model: str, user: str, system: str | None = None, **params) -> "Request":
        messages = ((("system", system),) if system else ()) + (("user", user),)
        return Request(model=model, messages=messages, **params)

    def as_dict(self) -> dict:
        """Every field, in a JSON-friendly form: the cache key is built from this."""
        # not dataclasses.asdict: its recursive deep copy was the costliest step of a cached call.
        # top_k only where set, so every request made before it existed keeps its cache key
        return {f.name: _plain(getattr(self, f.name)) for f in REQUEST_FIELDS
                if f.name != "top_k" or self.top_k is not None}


REQUEST_FIELDS = dataclasses.fields(Request)


def _plain(value):
    """Tuples, nested too, as lists: the JSON form of a request's fields."""
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


@dataclass
class Response:
    text: str
    finish_reason: str = "stop"  # stop | length | error
    input_tokens: int = 0
    output_tokens: int = 0
    choice_logprobs: list[float] | None = None
    error: str | None = None
    # the model the provider says answered (an API resolves an alias such as gpt-4o to a dated
    # snapshot), so a table can state which model actually judged; None for local models
    model: str | None = None
    cached: bool = False
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "cached"}
        d["extra"] = dict(self.extra)
        return d

    @staticmethod
    def from_json(d: dict) -> "Response":
        return Response(**{**d, "cached": True})


class Provider:
    """A backend. Batched providers implement complete_batch; others complete_one.

    complete_one raises RetryableError for transient failures and LLMError for permanent
    ones; the client around it does retries, concurrency, caching and the ledger.
    """

    name = "base"
    batched = False
    # a batched provider gets the client's batch_size requests at a time; one that schedules
    # its own batches (vLLM's continuous batching) gets all of a job's requests in one call
    schedules_batches = False

    def identity(self) -> dict:
        """What, besides the request, decides the reply (e.g. base_url, a weights hash).
        Goes into the cache key, so it must never contain a secret."""
        return {}

    def legacy_identity(self) -> dict:
        """The identity keys were made of before canonical keys (llm.cache.legacy_cache_key):
        replies stored under it still answer."""
        return self.identity()

    def complete_one(self, request: Request) -> Response:
        raise NotImplementedError

    def complete_batch(self, requests: list[Request]) -> list[Response]:
        raise NotImplementedError
