"""The Anthropic provider: the Messages API, or a server that speaks it."""

from __future__ import annotations

import os
import threading

import anthropic

from .base import LLMError, Provider, Request, Response, RetryableError

# Statuses worth retrying: timeout, conflict, rate limit, and every server-side error
# (529 "overloaded" included).
RETRYABLE_STATUSES = {408, 409, 429}


def retry_after(headers) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, else numeric `retry-after`."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        try:
            return float(value) / scale
        except (TypeError, ValueError):  # absent, or an HTTP date: let the client back off
            pass
    return None


class AnthropicProvider(Provider):
    name = "anthropic"
    batched = False

    def __init__(self, base_url: str | None = None, api_key_env: str = "ANTHROPIC_API_KEY", timeout: float = 120.0):
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout = timeout
        self._client: anthropic.Anthropic | None = None
        self._key = ""
        self._lock = threading.Lock()  # complete_one is called from several threads

    def identity(self) -> dict:
        return {"base_url": self.base_url}

    def client(self) -> anthropic.Anthropic:
        """Built on the first call, so a provider that only replays a cache needs no key."""
        with self._lock:
            if self._client is None:
                key = os.environ.get(self.api_key_env)
                if not key:
                    if self.base_url is None:
                        raise LLMError(f"the anthropic provider needs an API key in the environment variable {self.api_key_env}")
                    key = "EMPTY"  # a self-hosted compatible server may take any key
                # An explicit api_key also stops the SDK from looking for profiles and
                # federation settings. max_retries=0: retries belong to our client layer.
                self._client = anthropic.Anthropic(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout)
                self._key = key
            return self._client

    def complete_one(self, request: Request) -> Response:
        if request.fields or request.choices:
            raise LLMError("constrained fields and choice scoring are not supported by the anthropic provider (use local)")
        client = self.client()
        if request.messages is not None:
            system = "\n\n".join(content for role, content in request.messages if role == "system")
            messages = [{"role": role, "content": content} for role, content in request.messages if role != "system"]
        else:  # a raw prompt: the Messages API has no completion endpoint, so send it as the user turn
            system, messages = "", [{"role": "user", "content": request.prompt}]
        params = dict(model=request.model, max_tokens=request.max_tokens, messages=messages)
        if system:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = list(request.stop)
        # The SDK (2.x) no longer has typed temperature/top_p arguments, but the API takes
        # them, so they go in the body as they are. top_p only when it matters: newer models
        # reject temperature and top_p together. presence_penalty and seed have no Anthropic
        # equivalent and are ignored.
        sampling = {"temperature": request.temperature}
        if request.top_p != 1.0:
            sampling["top_p"] = request.top_p
        try:
            reply = client.messages.create(**params, extra_body=sampling)
        except anthropic.APIStatusError as err:
            raise self._status_error(err) from err
        except anthropic.APIConnectionError as err:  # includes APITimeoutError
            cause = f": {err.__cause__}" if err.__cause__ else ""
            message = f"anthropic: {err.message}{cause} ({self.base_url or 'api.anthropic.com'})"
            raise RetryableError(self._redact(message)) from err
        except anthropic.APIError as err:  # e.g. a reply that does not parse
            raise LLMError(self._redact(f"anthropic: {err.message}")) from err
        text = "".join(block.text for block in reply.content if block.type == "text")
        truncated = reply.stop_reason in ("max_tokens", "model_context_window_exceeded")
        return Response(
            text=text,
            finish_reason="length" if truncated else "stop",
            input_tokens=reply.usage.input_tokens,
            output_tokens=reply.usage.output_tokens,
            extra={"model": reply.model, "finish_reason": reply.stop_reason},
        )

    def _status_error(self, err: anthropic.APIStatusError) -> LLMError:
        detail = err.api_message or (err.body if isinstance(err.body, str) else None)
        message = self._redact(f"anthropic API error {err.status_code}: {detail or err.message}")
        if err.status_code in RETRYABLE_STATUSES or err.status_code >= 500:
            return RetryableError(message, retry_after=retry_after(err.response.headers))
        return LLMError(message)

    def _redact(self, message: str) -> str:
        # Servers may echo the key back in an error; never pass it on.
        return message.replace(self._key, "***") if self._key else message
