"""The client every stage calls: cache, retries with backoff, pacing, bounded concurrency,
a circuit breaker, a budget cap, progress lines, and the ledger."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from pyrate_limiter import Duration, Limiter, Rate

from .. import ledger as ledger_file
from .base import (AuthenticationError, BudgetExceededError, CircuitOpenError, LLMError, Provider, Request,
                   RequestRejected, Response, RetryableError, RunStopped)
from .breaker import CircuitBreaker
from .cache import Cache, cache_key, legacy_cache_key

log = logging.getLogger("alpacare.llm")

# how often the budget cap looks at other jobs' ledger shards
SPEND_REFRESH_SECONDS = 2.0
# how often a running job looks for replies other jobs stored meanwhile (before a request is
# sent): a size check of each index it knows, and a listing of the directory every few seconds
CACHE_REFRESH_SECONDS = 0.1
# how long a reply stamped with a time may take to show to other jobs (the stamp, the write, the
# fsync every shards.SYNC_SECONDS): a run that paid while another job wrote waits this long past
# its last reply before it settles which reply of a key both paid for is the one (_settle)
SETTLE_SECONDS = 2.0


class CacheMiss(LLMError):
    """Replay-only mode met a request that was never answered."""


class StorageError(RunStopped):
    """A reply or a ledger line could not be written (disk full, quota, a stale NFS handle):
    no new calls are made, since nothing paid from then on would be kept."""


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), for pacing and the budget's worst case."""
    return len(text) // 4 + 1


def request_text(request: Request) -> str:
    return request.prompt if request.messages is None else "\n".join(c for _, c in request.messages)


@dataclass
class Ledger:
    """Tokens, cost and time of one client's calls (this process); the ledger file gets a
    line per call as it happens, this is the running sum for the job's log."""

    name: str
    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    price: dict = field(default_factory=dict)  # USD per million tokens: {"input": x, "output": y}

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return ledger_file.cost_usd(self.price, input_tokens, output_tokens)

    def add(self, response: Response) -> None:
        if response.cached:
            self.cache_hits += 1
            return
        self.calls += 1
        self.failures += not response.ok
        self.input_tokens += response.input_tokens
        self.output_tokens += response.output_tokens
        self.seconds += response.seconds
        self.cost_usd += self.cost(response.input_tokens, response.output_tokens)

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "price"}

    def append_to(self, path: str | Path, **context) -> None:
        ledger_file.append(path, [{**context, **self.summary()}])


class Progress:
    """done / cached / failed and the rate, logged every `every` seconds and at the end."""

    def __init__(self, label: str, total: int, cached: int, every: float):
        self.label, self.total, self.cached, self.every = label, total, cached, every
        self.done = self.failed = 0
        self.start = self.last = time.monotonic()
        self.lock = threading.Lock()

    def update(self, ok: bool, n: int = 1) -> None:
        with self.lock:
            self.done += n
            self.failed += (not ok) * n
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                self.log()

    def log(self) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        left = self.total - self.cached - self.done
        eta = f", ~{left / rate:.0f}s left" if rate > 0 and left > 0 else ""
        log.info("%s: %d/%d answered (%d cached, %d called, %d failed), %.2f calls/s%s", self.label,
                 self.cached + self.done, self.total, self.cached, self.done, self.failed, rate, eta)


class LLM:
    """Answers requests through a provider. Failed calls come back as Responses with `error`
    set; only the circuit breaker (CircuitOpenError) and the budget cap (BudgetExceededError)
    raise, after everything that completed is cached and in the ledger."""

    def __init__(
        self,
        provider: Provider,
        cache: Cache | None = None,
        *,
        name: str = "",
        rule: str = "",
        replay_only: bool = False,
        max_concurrency: int = 4,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
        total_timeout: float | None = None,
        batch_size: int = 32,
        price: dict | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        breaker_failures: int = 10,
        breaker_rate: float = 0.5,
        breaker_window: int = 100,
        budget_usd: float | None = None,
        ledger_path: str | Path | None = None,
        max_failed_fraction: float = 0.0,
        progress_seconds: float = 10.0,
    ):
        self.provider = provider
        self.cache = cache
        self.name = name or provider.name
        self.rule = rule
        self.replay_only = replay_only
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.total_timeout = total_timeout
        self.batch_size = batch_size
        self.ledger = Ledger(name=self.name, price=price or {})
        self.tpm = tpm
        self._rpm_limiter = Limiter(Rate(rpm, Duration.MINUTE)) if rpm else None
        self._tpm_limiter = Limiter(Rate(tpm, Duration.MINUTE)) if tpm else None
        self.breaker = CircuitBreaker(breaker_failures, breaker_rate, breaker_window, concurrency=max_concurrency)
        self.budget_usd = budget_usd
        self.ledger_path = ledger_path
        self.max_failed_fraction = max_failed_fraction
        self.progress_seconds = progress_seconds
        # this client's own shard of the ledger; the budget cap reads the others' shards (at
        # most every 2 s: a listing of a shared directory per call would load the file server)
        # and adds this client's spend exactly
        self._ledger_writer = ledger_file.Writer(ledger_path, label=rule or self.name) if ledger_path else None
        self._spend = (ledger_file.SpendWatcher(ledger_path, exclude=lambda name: name == self._ledger_writer.name,
                                                every=SPEND_REFRESH_SECONDS) if ledger_path else None)
        self._recorded_cost = 0.0  # cost of the rows this client wrote to its ledger shard
        self._identity = self._legacy_identity = None
        self._answered_by: dict[str, str] = {}  # canonical key -> the older key a stored reply has
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped: Exception | None = None
        self._reserved = 0.0  # worst-case cost of the paid calls in flight (budget cap)
        # the order this job asks its requests in: a hash of (key, salt), so two jobs that share
        # requests do not reach the shared ones at the same moment and both pay
        self._order_salt = secrets.token_hex(8)
        self._late_hits = 0  # requests another job answered while this run waited to ask them
        # called after each run with the cache keys of every reply it returned (what the
        # outputs depend on): a Snakemake job lists them for the replay bundle (alpacare.snake)
        self.on_answered = None

    # --- identity ---------------------------------------------------------------------

    def key(self, request: Request) -> str:
        """The cache entry that answers `request`: its canonical key, or the key of a reply
        stored before keys were canonical (what a verdict row records: a replay bundle made
        before still replays to the same files)."""
        key = self._canonical_key(request)
        return self._answered_by.get(key, key)

    def _canonical_key(self, request: Request) -> str:
        if self._identity is None:
            self._identity = self.provider.identity()
        return cache_key(self.provider.name, self._identity, request.as_dict())

    def _get(self, request: Request, key: str) -> Response | None:
        """The cached reply under the canonical key, else under the key it had before."""
        hit = self.cache.get(key)
        if hit is None:
            if self._legacy_identity is None:
                self._legacy_identity = self.provider.legacy_identity()
            old = legacy_cache_key(self.provider.name, self._legacy_identity, request.as_dict())
            if old != key and (hit := self.cache.get(old)) is not None:
                with self._lock:
                    self._answered_by[key] = old
        return hit

    def where(self, request: Request) -> str:
        """Names the endpoint, the model and the rule in every message."""
        rule = f" in rule {self.rule}" if self.rule else ""
        return f"endpoint {self.name!r} (model {request.model}){rule}"

    # --- the run ----------------------------------------------------------------------

    def run(self, requests: list[Request]) -> list[Response]:
        """Answer every request, in order."""
        responses: list[Response | None] = [None] * len(requests)
        began = time.time()
        keys = [self._canonical_key(r) for r in requests]
        if self.cache is not None:
            self.cache.refresh()  # replies other jobs wrote since this cache was opened
        todo = []
        for i, (request, key) in enumerate(zip(requests, keys)):
            hit = self._get(request, key) if self.cache is not None else None
            if hit is not None:
                responses[i] = hit
                self.ledger.add(hit)
            elif self.replay_only:
                raise CacheMiss(f"replay-only: no cached reply for request {i} to {self.where(request)} ({key[:12]}); "
                                "run with llm.replay_only: false and an API key to make the call")
            else:
                todo.append(i)
        hits = len(requests) - len(todo)
        if hits:
            self._record([{"calls": 0, "cache_hits": hits}])
        # identical requests (same key) are asked once; the copies take its reply as a cache hit
        first: dict[str, int] = {}
        copies = [(i, first[keys[i]]) for i in todo if first.setdefault(keys[i], i) != i]
        todo = list(first.values())
        progress = Progress(f"{self.rule or 'llm'} {self.name}", len(requests), hits + len(copies), self.progress_seconds)
        if todo:
            if self.provider.batched:
                size = len(todo) if self.provider.schedules_batches else self.batch_size
                for start in range(0, len(todo), size):
                    if self._stop.is_set():  # a failed write: nothing more would be kept
                        break
                    chunk = todo[start : start + size]
                    self._batch([requests[i] for i in chunk], chunk, responses, progress)
            else:
                todo.sort(key=lambda i: hashlib.sha256(f"{self._order_salt}{keys[i]}".encode()).digest())
                self._threaded(requests, keys, todo, responses, progress)
            self._settle(keys, todo, responses, began)
        if self._late_hits:
            self._record([{"calls": 0, "cache_hits": self._late_hits}])
            self._late_hits = 0
        for i, original in copies:
            if responses[original] is not None:
                responses[i] = dataclasses.replace(responses[original], cached=responses[original].ok)
                self.ledger.add(responses[i])
        if copies:
            self._record([{"calls": 0, "cache_hits": sum(responses[i] is not None and responses[i].ok for i, _ in copies)}])
        progress.log()
        if self.on_answered is not None and self.cache is not None:
            self.on_answered({self._answered_by.get(keys[i], keys[i]) for i, r in enumerate(responses) if r is not None and r.ok})
        if self._stopped is not None:
            raise self._stopped
        return responses

    def _threaded(self, requests, keys, todo, responses, progress) -> None:
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = {pool.submit(self._one, requests[i], keys[i]): i for i in todo}
            for future in as_completed(futures):
                response = future.result()
                if response is not None:  # None: never asked, the run was stopped first
                    responses[futures[future]] = response
                    self.ledger.add(response)
                    progress.update(response.ok)

    def _batch(self, batch: list[Request], indices: list[int], responses: list, progress: Progress) -> None:
        start = time.monotonic()
        try:
            answers = self.provider.complete_batch(batch)
        except LLMError as err:
            answers = [Response(text="", finish_reason="error", error=f"{err} [{self.where(batch[0])}]") for _ in batch]
        per_call = (time.monotonic() - start) / len(batch)
        for i, request, response in zip(indices, batch, answers):
            response.seconds = per_call
            self._store(request, response)
            responses[i] = response
            self.ledger.add(response)
        ok = [r.ok for r in answers]
        self._record([self._row(answers, attempts=len(answers))])
        progress.update(True, sum(ok))
        progress.update(False, len(ok) - sum(ok))

    def _store(self, request: Request, response: Response, key: str | None = None) -> None:
        if self.cache is not None and response.ok:
            try:
                self.cache.put(key or self._canonical_key(request), request.as_dict(), response)
            except OSError as err:
                self._write_failed("a reply in the cache", err)

    def _write_failed(self, what: str, err: OSError) -> None:
        """Stop making calls: what is paid from now on could not be kept."""
        with self._lock:
            if self._stopped is None:
                self._stopped = StorageError(
                    f"could not store {what} for {self._endpoint()}: {err}; no new calls were made (those in "
                    "flight were finished and stored where they could be). Free the space or fix the filesystem "
                    "and rerun: what was stored is not paid again")
                log.error("%s", self._stopped)
                self._stop.set()
            else:
                log.error("could not store %s either: %s", what, err)

    def _endpoint(self) -> str:
        rule = f" in rule {self.rule}" if self.rule else ""
        return f"endpoint {self.name!r}{rule}"

    def _late_hit(self, request: Request, key: str) -> Response | None:
        """A reply another job stored since this run looked (it asked the same request)."""
        if self.cache is None:
            return None
        self.cache.refresh(every=CACHE_REFRESH_SECONDS)
        hit = self._get(request, key)
        if hit is not None:
            with self._lock:
                self._late_hits += 1
        return hit

    def _settle(self, keys: list[str], todo: list[int], responses: list, began: float) -> None:
        """Where another job paid for a request this run paid for too, every reader serves the
        earlier reply (cache.choose): this run's outputs take it as well, so a verdict and the
        replay bundle agree. While another job writes, an earlier-stamped reply of its may not
        show yet: wait until any would (SETTLE_SECONDS past this run's last reply)."""
        if self.cache is None or self.cache.last_put < began:
            return  # nothing paid and stored in this run
        if self.cache.others_writing(since=began - SETTLE_SECONDS):
            time.sleep(max(0.0, self.cache.last_put + SETTLE_SECONDS - time.time()))
        self.cache.refresh()
        for i in todo:
            if responses[i] is not None and responses[i].ok and not responses[i].cached and self.cache.has_others(keys[i]):
                chosen = self.cache.get(keys[i])
                if chosen is not None:
                    responses[i] = dataclasses.replace(chosen, cached=False, seconds=responses[i].seconds)

    # --- one API call, with its retries -----------------------------------------------

    def _one(self, request: Request, key: str) -> Response | None:
        start = time.monotonic()
        attempts = 0
        error = None
        if (hit := self._late_hit(request, key)) is not None:
            return hit
        while True:
            if self._stop.is_set() or not self._pace(request):
                if not attempts:
                    return None
                error = f"stopped after {attempts} attempt(s): {error}"
                break
            reserved = self._reserve(request)
            if reserved is None:  # the budget cap: never asked
                if not attempts:
                    return None
                error = f"stopped after {attempts} attempt(s): {error}"
                break
            attempts += 1
            sent = time.monotonic()
            endpoints = True  # whether this failure is evidence against the endpoint (the breaker)
            try:
                response = self.provider.complete_one(request)
            except RetryableError as err:
                error, retry_after = str(err), err.retry_after
            except AuthenticationError as err:  # the key: every call would fail alike, stop now
                error, retry_after, endpoints = str(err), False, False
                self._halt(err)
            except RequestRejected as err:  # the item's: no retry fixes it, the endpoint is fine
                error, retry_after, endpoints = str(err), False, False
                log.warning("%s: request %s refused, not retried: %s", self.where(request), key[:12], error)
            except LLMError as err:  # permanent: asking again gives the same answer
                error, retry_after = str(err), False
            except Exception as err:  # a bug or a surprise in an SDK: named, never fatal to the stage
                error, retry_after = f"{type(err).__name__}: {err}", False
            else:
                response.seconds = time.monotonic() - start
                # the ledger first: a kill between the two re-pays a call the ledger already
                # shows as paid, never leaves a paid call out of it
                self._record([self._row([response], attempts=attempts)])
                self._store(request, response, key)
                self.breaker.record(True, sent)
                self._release(reserved)
                return response
            self._release(reserved)
            if endpoints:
                self._attempt_failed(request, error, sent)
            if retry_after is False:
                break
            if attempts > self.max_retries:
                error = f"gave up after {attempts} attempts: {error}"
                break
            delay = retry_after
            if delay is None:  # exponential backoff with jitter
                delay = self.backoff_seconds * 2 ** (attempts - 1) * (0.5 + random.random())
            delay = min(delay, self.max_backoff_seconds)
            if self.total_timeout is not None and time.monotonic() - start + delay > self.total_timeout:
                error = f"gave up after {attempts} attempts ({self.total_timeout:.0f}s total timeout): {error}"
                break
            log.warning("%s: %s; retrying in %.1fs", self.where(request), error, delay)
            self._stop.wait(delay)
        response = Response(text="", finish_reason="error", error=f"{error} [{self.where(request)}]",
                            seconds=time.monotonic() - start)
        self._record([self._row([response], attempts=attempts)])
        return response

    def _pace(self, request: Request) -> bool:
        """Wait for the endpoint's requests- and tokens-per-minute allowance (shared by every
        thread of this job); False if the run was stopped meanwhile."""
        needs = [(self._rpm_limiter, 1)]
        if self._tpm_limiter is not None:
            tokens = estimate_tokens(request_text(request)) + request.max_tokens
            needs.append((self._tpm_limiter, min(tokens, self.tpm)))
        for limiter, weight in needs:
            if limiter is None:
                continue
            while not limiter.try_acquire(self.name, weight=weight, blocking=True, timeout=1):
                if self._stop.is_set():
                    return False
        return not self._stop.is_set()

    # --- circuit breaker --------------------------------------------------------------

    def _attempt_failed(self, request: Request, error: str, sent: float) -> None:
        reason = self.breaker.record(False, sent)
        with self._lock:
            if reason and self._stopped is None:
                self._stopped = CircuitOpenError(
                    f"circuit breaker: {self.where(request)} {reason} ({self.breaker.settings()}); no new calls "
                    f"were made. Completed calls are cached and in the ledger: rerun once the endpoint answers. "
                    f"Last error: {error}")
                log.error("%s", self._stopped)
                self._stop.set()

    def _halt(self, err: Exception) -> None:
        """Stop new calls now; run() raises `err` once the calls in flight have ended."""
        with self._lock:
            if self._stopped is None:
                self._stopped = err
                log.error("%s", err)
                self._stop.set()

    # --- budget cap -------------------------------------------------------------------

    def _reserve(self, request: Request) -> float | None:
        """Set aside the call's worst-case cost; None (and the run stopped) if that could take
        the ledger's total past the budget."""
        if self.budget_usd is None or not self.ledger.price:
            return 0.0
        worst = self.ledger.cost(estimate_tokens(request_text(request)), request.max_tokens)
        with self._lock:
            spent = self._spend.total() + self._recorded_cost if self._spend else self.ledger.cost_usd
            if spent + self._reserved + worst > self.budget_usd:
                if self._stopped is None:
                    self._stopped = BudgetExceededError(
                        f"budget cap: the next call to {self.where(request)} could cost up to ${worst:.4f}, and "
                        f"${spent:.4f} is spent (${self._reserved:.4f} more in flight) of llm.budget_usd "
                        f"${self.budget_usd:g}; no new paid calls were made. Completed calls are cached; raise the "
                        "cap to go on.")
                    log.error("%s", self._stopped)
                    self._stop.set()
                return None
            self._reserved += worst
            return worst

    def _release(self, reserved: float) -> None:
        if reserved:
            with self._lock:
                self._reserved -= reserved

    # --- ledger -----------------------------------------------------------------------

    def _row(self, responses: list[Response], attempts: int) -> dict:
        paid = [r for r in responses if r.ok]
        input_tokens = sum(r.input_tokens for r in paid)
        output_tokens = sum(r.output_tokens for r in paid)
        row = {"calls": len(responses), "failures": len(responses) - len(paid), "attempts": attempts,
               "input_tokens": input_tokens, "output_tokens": output_tokens,
               "cost_usd": self.ledger.cost(input_tokens, output_tokens),
               "seconds": round(sum(r.seconds for r in responses), 3)}
        # the snapshot the API says answered (gpt-4o-mini-2024-07-18 for a request of gpt-4o-mini):
        # what a reader of the bill needs when an alias moves to a new model
        reported = sorted({r.model for r in paid if r.model})
        if reported:
            row["reported_model"] = ", ".join(reported)
        errors = [r.error for r in responses if not r.ok]
        if errors:
            row["error"] = errors[0][:300]
        return row

    def _record(self, rows: list[dict]) -> None:
        if self.ledger_path is None:
            return
        context = {"time": round(time.time(), 3), "rule": self.rule, "stage": self.rule, "endpoint": self.name,
                   "provider": self.provider.name, "pid": os.getpid()}
        with self._lock:
            self._recorded_cost += sum(row.get("cost_usd", 0.0) for row in rows)
        try:
            self._ledger_writer.append([{**context, **row} for row in rows])
        except OSError as err:
            self._write_failed("a ledger line", err)

    def summary_json(self) -> str:
        return json.dumps(self.ledger.summary())
