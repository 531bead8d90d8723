"""The client every stage calls: cache, retries with backoff, bounded concurrency, ledger."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .base import LLMError, Provider, Request, Response, RetryableError
from .cache import Cache, cache_key

log = logging.getLogger("alpacare.llm")


class CacheMiss(LLMError):
    """Replay-only mode met a request that was never answered."""


@dataclass
class Ledger:
    """Tokens, cost and time of one client's calls; appended as one JSON line per run."""

    name: str
    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    price: dict = field(default_factory=dict)  # USD per million tokens: {"input": x, "output": y}

    def add(self, response: Response) -> None:
        if response.cached:
            self.cache_hits += 1
            return
        self.calls += 1
        self.failures += not response.ok
        self.input_tokens += response.input_tokens
        self.output_tokens += response.output_tokens
        self.seconds += response.seconds
        self.cost_usd += (
            response.input_tokens * self.price.get("input", 0.0) + response.output_tokens * self.price.get("output", 0.0)
        ) / 1e6

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "price"}

    def append_to(self, path: str | Path, **context) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**context, **self.summary()}) + "\n"
        # one small O_APPEND write per run: safe for concurrent jobs
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


class LLM:
    def __init__(
        self,
        provider: Provider,
        cache: Cache | None = None,
        *,
        name: str = "",
        replay_only: bool = False,
        max_concurrency: int = 4,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
        batch_size: int = 32,
        price: dict | None = None,
    ):
        self.provider = provider
        self.cache = cache
        self.replay_only = replay_only
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.batch_size = batch_size
        self.ledger = Ledger(name=name or provider.name, price=price or {})
        self._identity = None

    def key(self, request: Request) -> str:
        if self._identity is None:
            self._identity = self.provider.identity()
        return cache_key(self.provider.name, self._identity, request.as_dict())

    def run(self, requests: list[Request]) -> list[Response]:
        """Answer every request, in order. A failed call comes back as a Response with
        `error` set (after bounded retries) instead of raising, so callers keep the rest."""
        responses: list[Response | None] = [None] * len(requests)
        todo = []
        for i, request in enumerate(requests):
            hit = self.cache.get(self.key(request)) if self.cache else None
            if hit is not None:
                responses[i] = hit
            elif self.replay_only:
                raise CacheMiss(f"replay-only: no cached reply for request {i} to {request.model!r} ({self.key(request)[:12]})")
            else:
                todo.append(i)
        if todo:
            if self.provider.batched:
                for start in range(0, len(todo), self.batch_size):
                    chunk = todo[start : start + self.batch_size]
                    self._batch([requests[i] for i in chunk], chunk, responses)
            else:
                with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
                    for i, response in zip(todo, pool.map(lambda i: self._one(requests[i]), todo)):
                        responses[i] = response
        for response in responses:
            self.ledger.add(response)
        return responses

    def _store(self, request: Request, response: Response) -> None:
        if self.cache is not None and response.ok:
            self.cache.put(self.key(request), request.as_dict(), response)

    def _batch(self, batch: list[Request], indices: list[int], responses: list) -> None:
        start = time.monotonic()
        try:
            answers = self.provider.complete_batch(batch)
        except LLMError as err:
            answers = [Response(text="", finish_reason="error", error=str(err)) for _ in batch]
        per_call = (time.monotonic() - start) / len(batch)
        for i, request, response in zip(indices, batch, answers):
            response.seconds = per_call
            self._store(request, response)
            responses[i] = response

    def _one(self, request: Request) -> Response:
        start = time.monotonic()
        for attempt in range(self.max_retries + 1):
            try:
                response = self.provider.complete_one(request)
                response.seconds = time.monotonic() - start
                self._store(request, response)
                return response
            except RetryableError as err:
                if attempt == self.max_retries:
                    error = f"gave up after {attempt + 1} attempts: {err}"
                    break
                delay = err.retry_after
                if delay is None:  # exponential backoff with jitter
                    delay = self.backoff_seconds * 2**attempt * (0.5 + random.random())
                delay = min(delay, self.max_backoff_seconds)
                log.warning("%s: %s; retrying in %.1fs", self.provider.name, err, delay)
                time.sleep(delay)
            except LLMError as err:
                error = str(err)
                break
        return Response(text="", finish_reason="error", error=error, seconds=time.monotonic() - start)
