"""What the HTTP API providers share: the key from the environment, a lazily built SDK
client, redaction, and the mapping of HTTP statuses to retryable or permanent errors."""

from __future__ import annotations

import os
import threading

from .base import LLMError, Provider, RetryableError

# Statuses worth retrying: timeout, conflict, rate limit, and every server-side error
# (Anthropic's 529 "overloaded" included).
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


class APIProvider(Provider):
    """Subclasses set `name`, `default_host` and `default_key_env`, and implement make_client
    and complete_one."""

    batched = False
    default_host = ""
    default_key_env = ""

    def __init__(self, base_url: str | None = None, api_key_env: str | None = None, timeout: float = 120.0):
        self.base_url = base_url
        self.api_key_env = api_key_env or self.default_key_env
        self.timeout = timeout
        self._client = None
        self._key = ""
        self._lock = threading.Lock()  # complete_one is called from several threads

    def identity(self) -> dict:
        return {"base_url": self.base_url}

    def make_client(self, key: str):
        raise NotImplementedError

    def client(self):
        """Built on the first call, so a provider that only replays a cache needs no key."""
        with self._lock:
            if self._client is None:
                key = os.environ.get(self.api_key_env)
                if not key:
                    if self.base_url is None:
                        raise LLMError(f"the {self.name} provider needs an API key in the environment variable {self.api_key_env}")
                    key = "EMPTY"  # self-hosted compatible servers take any key
                self._client = self.make_client(key)
                self._key = key
            return self._client

    def status_error(self, status: int, detail: str, headers) -> LLMError:
        message = self.redact(f"{self.name} API error {status}: {detail}")
        if status in RETRYABLE_STATUSES or status >= 500:
            return RetryableError(message, retry_after=retry_after(headers))
        return LLMError(message)

    def connection_error(self, err) -> RetryableError:
        cause = f": {err.__cause__}" if err.__cause__ else ""
        return RetryableError(self.redact(f"{self.name}: {err.message}{cause} ({self.base_url or self.default_host})"))

    def redact(self, message: str) -> str:
        # Servers may echo the key back (e.g. "Incorrect API key provided: ..."); never pass it on.
        return message.replace(self._key, "***") if self._key else message
