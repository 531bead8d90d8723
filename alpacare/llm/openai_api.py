"""The OpenAI provider: the OpenAI API, or any OpenAI-compatible server (vLLM, llama.cpp)."""

from __future__ import annotations

import os
import threading

import openai

from .base import LLMError, Provider, Request, Response, RetryableError

# Statuses worth retrying: timeout, conflict, rate limit, and every server-side error.
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


class OpenAIProvider(Provider):
    name = "openai"
    batched = False

    def __init__(self, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", timeout: float = 120.0):
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout = timeout
        self._client: openai.OpenAI | None = None
        self._key = ""
        self._lock = threading.Lock()  # complete_one is called from several threads

    def identity(self) -> dict:
        return {"base_url": self.base_url}

    def client(self) -> openai.OpenAI:
        """Built on the first call, so a provider that only replays a cache needs no key."""
        with self._lock:
            if self._client is None:
                key = os.environ.get(self.api_key_env)
                if not key:
                    if self.base_url is None:
                        raise LLMError(f"the openai provider needs an API key in the environment variable {self.api_key_env}")
                    key = "EMPTY"  # compatible servers take any key
                # max_retries=0: retries (and their backoff) belong to our client layer.
                self._client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout)
                self._key = key
            return self._client

    def complete_one(self, request: Request) -> Response:
        if request.fields or request.choices:
            raise LLMError("constrained fields and choice scoring are not supported by the openai provider (use local)")
        client = self.client()
        params = dict(
            model=request.model,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            presence_penalty=request.presence_penalty,
        )
        if request.stop:
            params["stop"] = list(request.stop)
        if request.seed is not None:
            params["seed"] = request.seed
        try:
            if request.messages is not None:
                messages = [{"role": role, "content": content} for role, content in request.messages]
                reply = client.chat.completions.create(messages=messages, **params)
                choice = reply.choices[0]
                text = choice.message.content or ""
            else:
                reply = client.completions.create(prompt=request.prompt, **params)
                choice = reply.choices[0]
                text = choice.text
        except openai.APIStatusError as err:
            raise self._status_error(err) from err
        except openai.APIConnectionError as err:  # includes APITimeoutError
            cause = f": {err.__cause__}" if err.__cause__ else ""
            raise RetryableError(self._redact(f"openai: {err.message}{cause} ({self.base_url or 'api.openai.com'})")) from err
        except openai.APIError as err:  # e.g. a reply that does not parse
            raise LLMError(self._redact(f"openai: {err.message}")) from err
        usage = reply.usage
        return Response(
            text=text,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            extra={"model": reply.model, "finish_reason": choice.finish_reason},
        )

    def _status_error(self, err: openai.APIStatusError) -> LLMError:
        body = err.body  # the SDK hands us the `error` object of the reply, or its raw text
        detail = body.get("message") if isinstance(body, dict) else body
        message = self._redact(f"openai API error {err.status_code}: {detail or err.message}")
        if err.status_code in RETRYABLE_STATUSES or err.status_code >= 500:
            return RetryableError(message, retry_after=retry_after(err.response.headers))
        return LLMError(message)

    def _redact(self, message: str) -> str:
        # Servers may echo the key back (e.g. "Incorrect API key provided: ..."); never pass it on.
        return message.replace(self._key, "***") if self._key else message
