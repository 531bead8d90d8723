"""What the HTTP API providers share: the key from the environment, a lazily built SDK
client, timeouts, redaction, and the mapping of every failure to retryable or permanent."""

from __future__ import annotations

import json
import logging
import os
import threading
from urllib.parse import urlparse

from .base import AuthenticationError, LLMError, Provider, RequestRejected, RetryableError

# Statuses worth retrying: timeout, conflict, rate limit, and every server-side error
# (Anthropic's 529 "overloaded" included).
RETRYABLE_STATUSES = {408, 409, 429}

# What a reply that arrived but cannot be read raises inside the SDKs or our parsing of it
# (json.JSONDecodeError is a ValueError; a body of the wrong shape gives the others). The
# server may answer properly next time, so these are retried, never allowed to kill a stage.
MALFORMED_REPLY = (ValueError, TypeError, KeyError, IndexError, AttributeError)

# Statuses that refuse the request itself (malformed, too long, too large, unprocessable, a
# content filter's 400): the item's failure, never the endpoint's. A 404 is the item's only
# where it names a model; a 404 for a path (a wrong base_url) is the endpoint's.
REJECTED_STATUSES = {400, 413, 422}
AUTH_STATUSES = {401, 403}

DEFAULT_TIMEOUT = {"connect": 10.0, "read": 300.0}

log = logging.getLogger("alpacare.llm")


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
    and complete_one.

    timeout: seconds, or {"connect": s, "read": s} (read = longest wait for the reply).
    keyless: a self-hosted server that takes no key; without it a missing key is an error
    even with a base_url, so a forgotten export never sends requests with a dummy key.
    """

    batched = False
    default_host = ""
    default_key_env = ""

    def __init__(self, base_url: str | None = None, api_key_env: str | None = None,
                 timeout: float | dict = 120.0, keyless: bool = False, model: str | None = None):
        self.base_url = base_url
        self.model = model  # the llms entry's model: what a self-hosted server is asked for
        self.api_key_env = api_key_env or self.default_key_env
        self.timeout = timeout
        self.keyless = keyless
        self._client = None
        self._key = ""
        self._lock = threading.Lock()  # complete_one is called from several threads

    def identity(self) -> dict:
        """The vendor's own API, named or not, is one identity; a self-hosted server is known by
        the model it serves (the id, and the weights' root where it reports one: vLLM's
        /v1/models does), so it keeps its replies when it moves to another node and a different
        model under the same name gets new ones; a server that reports no root is known by its
        address, as before."""
        if not self.base_url or urlparse(self.base_url).hostname == self.default_host:
            return {"base_url": None}
        served = self.served()
        if served is not None:
            return {"served": served}
        return {"base_url": self.base_url.rstrip("/")}

    def legacy_identity(self) -> dict:
        return {"base_url": self.base_url}

    def served(self) -> dict | None:
        """{"model", "root"} of this entry's model as the server's model list names it; None
        if the server cannot say (no list, no root, unreachable)."""
        import urllib.error
        import urllib.request

        if not self.model:
            return None
        url = self.base_url.rstrip("/") + ("/models" if self.base_url.rstrip("/").endswith("/v1") else "/v1/models")
        key = os.environ.get(self.api_key_env) or "EMPTY"
        ask = urllib.request.Request(url, headers={"authorization": f"Bearer {key}", "x-api-key": key})
        try:  # the standard library's client: the rules' environments need nothing more for one GET
            with urllib.request.urlopen(ask, timeout=10.0) as reply:
                listed = {m.get("id"): m for m in json.loads(reply.read()).get("data", []) if isinstance(m, dict)}
        except (OSError, ValueError, AttributeError) as err:  # URLError and HTTPError are OSErrors
            log.warning("%s: could not read the served models at %s (%s): its replies are keyed by its address",
                        self.name, url, self.redact(str(err)))
            return None
        root = (listed.get(self.model) or {}).get("root")
        return {"model": self.model, "root": root} if root else None

    @property
    def host(self) -> str:
        return self.base_url or self.default_host

    def make_client(self, key: str):
        raise NotImplementedError

    def sdk_timeout(self, sdk):
        if isinstance(self.timeout, dict):
            t = {**DEFAULT_TIMEOUT, **{k: v for k, v in self.timeout.items() if k in ("connect", "read")}}
            return sdk.Timeout(t["read"], connect=t["connect"])
        return self.timeout

    def client(self):
        """Built on the first call, so a provider that only replays a cache needs no key."""
        with self._lock:
            if self._client is None:
                key = os.environ.get(self.api_key_env)
                if not key:
                    if not self.keyless:
                        hint = " (or set `keyless: true` on this llms entry if the server takes no key)" if self.base_url else ""
                        raise LLMError(f"the {self.name} provider needs an API key in the environment variable {self.api_key_env}{hint}")
                    key = "EMPTY"  # self-hosted compatible servers take any key
                self._client = self.make_client(key)
                self._key = key
            return self._client

    def status_error(self, status: int, detail: str, headers, code: str | None = None) -> LLMError:
        """`code`: the error's machine-readable code or type in the body, where the API gives one."""
        message = self.redact(f"{self.name} API error {status}: {detail}")
        if status in RETRYABLE_STATUSES or status >= 500:
            return RetryableError(message, retry_after=retry_after(headers))
        if status in AUTH_STATUSES:
            if self.keyless:
                return AuthenticationError(f"{message} ({self.host} wants a key: drop `keyless: true` from this llms "
                                           f"entry and export it in {self.api_key_env}, or name its variable in api_key_env)")
            return AuthenticationError(f"{message} ({self.host} refused the key in the environment variable "
                                       f"{self.api_key_env}: export a valid one, then rerun)")
        if status in REJECTED_STATUSES or (status == 404 and "model" in f"{code} {detail}".lower()):
            return RequestRejected(message)
        return LLMError(message)

    def filtered(self, reason: str) -> RequestRejected:
        """A reply withheld by the provider's content filter (a 200): the item's failure."""
        return RequestRejected(f"{self.name}: the reply was withheld by the content filter ({reason})")

    def connection_error(self, err) -> RetryableError:
        cause = f": {err.__cause__}" if err.__cause__ else ""
        return RetryableError(self.redact(f"{self.name}: {err.message}{cause} ({self.host})"))

    def malformed_error(self, err: Exception) -> RetryableError:
        return RetryableError(self.redact(f"{self.name}: malformed reply from {self.host} ({type(err).__name__}: {err})"))

    def redact(self, message: str) -> str:
        # Servers may echo the key back (e.g. "Incorrect API key provided: ..."); never pass it on.
        return message.replace(self._key, "***") if self._key and self._key != "EMPTY" else message
