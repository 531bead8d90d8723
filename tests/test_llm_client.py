"""The client around every provider: cache, replay-only, retries, concurrency, ledger.
The provider here is a scripted in-process one; the real API providers run through the
same client against a wire-format server at the end of this file."""

import multiprocessing
import threading
import time

import pytest

from alpacare import ledger
from alpacare.llm import LLM, Cache, CacheMiss, LLMError, Provider, Request, Response, RetryableError, make_llm
from alpacare.llm.cache import cache_key
from fakeapi import FakeAPI


class Scripted(Provider):
    name = "scripted"

    def __init__(self, failures=()):
        self.calls = []
        self.failures = list(failures)
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def complete_one(self, request):
        with self.lock:
            self.calls.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            failure = self.failures.pop(0) if self.failures else None
        try:
            time.sleep(0.02)
            if failure:
                raise failure
            return Response(text="re: " + request.messages[-1][1], input_tokens=10, output_tokens=5)
        finally:
            with self.lock:
                self.in_flight -= 1


def ask(*texts, **params):
    return [Request.chat("m", t, **params) for t in texts]


def test_cache_answers_the_second_time(tmp_path):
    provider = Scripted()
    llm = LLM(provider, Cache(tmp_path / "c.sqlite"))
    first = llm.run(ask("a", "b"))
    again = LLM(provider, Cache(tmp_path / "c.sqlite")).run(ask("a", "b", "c"))
    assert [r.text for r in again] == ["re: a", "re: b", "re: c"]
    assert len(provider.calls) == 3  # only "c" was new
    assert [r.cached for r in again] == [True, True, False] and not any(r.cached for r in first)


def test_every_parameter_is_in_the_key(tmp_path):
    provider = Scripted()
    llm = LLM(provider, Cache(tmp_path / "c.sqlite"))
    llm.run(ask("a") + ask("a", temperature=0.5) + ask("a", seed=1) + [Request.chat("m2", "a")] + ask("a", max_tokens=9))
    assert len(provider.calls) == 5


def test_key_depends_on_provider_identity_but_never_a_secret(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    request = Request.chat("gpt-4", "hi").as_dict()
    a = cache_key("openai", {"base_url": None}, request)
    assert a != cache_key("openai", {"base_url": "http://127.0.0.1:8000/v1"}, request)
    from alpacare.llm.openai_api import OpenAIProvider

    assert "sk-secret" not in repr(OpenAIProvider().identity())


def test_replay_only_fails_on_a_miss(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    LLM(Scripted(), cache).run(ask("a"))
    replay = LLM(Scripted(), cache, replay_only=True)
    assert replay.run(ask("a"))[0].text == "re: a"
    with pytest.raises(CacheMiss, match="replay-only: no cached reply for request 0"):
        replay.run(ask("b"))


def test_retries_honour_retry_after_then_succeed(tmp_path):
    provider = Scripted([RetryableError("429", retry_after=0.05), RetryableError("503", retry_after=0.05)])
    start = time.monotonic()
    (response,) = LLM(provider, max_retries=3).run(ask("a"))
    assert response.ok and response.text == "re: a"
    assert len(provider.calls) == 3 and time.monotonic() - start >= 0.1


class DownFor(Scripted):
    """Fails every call whose text is "down", as an outage of one item would."""

    def complete_one(self, request):
        if request.messages[-1][1] == "down":
            with self.lock:
                self.calls.append(request)
            raise RetryableError("overloaded", retry_after=0.0)
        return super().complete_one(request)


def test_retries_are_bounded_and_the_failure_recorded(tmp_path):
    provider = DownFor()
    cache = Cache(tmp_path / "c.sqlite")
    llm = LLM(provider, cache, max_retries=2)
    down, ok = llm.run(ask("down", "ok"))
    assert not down.ok and "gave up after 3 attempts" in down.error
    assert ok.ok
    assert sum(r.messages[-1][1] == "down" for r in provider.calls) == 3
    assert len(cache) == 1  # failures are not cached; the success is
    assert llm.ledger.failures == 1


def test_permanent_errors_are_not_retried():
    provider = Scripted([LLMError("401 bad key")])
    (response,) = LLM(provider, max_retries=5).run(ask("a"))
    assert response.error == "401 bad key [endpoint 'scripted' (model m)]" and len(provider.calls) == 1


def test_concurrency_is_bounded():
    provider = Scripted()
    LLM(provider, max_concurrency=3).run(ask(*[str(i) for i in range(20)]))
    assert provider.max_in_flight <= 3 and provider.max_in_flight >= 2


def test_ledger_counts_tokens_cost_and_hits(tmp_path):
    cache = Cache(tmp_path / "c.sqlite")
    llm = LLM(Scripted(), cache, price={"input": 1.0, "output": 2.0})
    llm.run(ask("a", "b"))
    llm.run(ask("a"))
    s = llm.ledger.summary()
    assert (s["calls"], s["cache_hits"], s["input_tokens"], s["output_tokens"]) == (2, 1, 20, 10)
    assert s["cost_usd"] == pytest.approx((20 * 1.0 + 10 * 2.0) / 1e6)
    llm.ledger.append_to(tmp_path / "ledger", stage="test")
    assert [row["stage"] for row in ledger.read(tmp_path / "ledger")] == ["test"]


def test_ledger_lines_name_the_model_the_api_reported(tmp_path):
    class Snapshot(Scripted):
        def complete_one(self, request):
            response = super().complete_one(request)
            response.model = "m-2024-07-18"
            return response

    llm = LLM(Snapshot(), None, ledger_path=tmp_path / "ledger", rule="judge")
    llm.run(ask("a", "b"))
    rows = ledger.read(tmp_path / "ledger")
    assert rows and all(row["reported_model"] == "m-2024-07-18" for row in rows)
    assert ledger.summarize(tmp_path / "ledger")[0]["reported_model"] == "m-2024-07-18"   # the ledger table's column
    LLM(Scripted(), None, ledger_path=tmp_path / "other", rule="judge").run(ask("c"))
    assert "reported_model" not in ledger.read(tmp_path / "other")[0]  # a provider that names none


def _writer(path, start):
    cache = Cache(path)
    for i in range(start, start + 100):
        cache.put(f"k{i}", {}, Response(text=str(i)))


def test_cache_is_safe_for_concurrent_processes(tmp_path):
    path = tmp_path / "c.sqlite"
    Cache(path)
    procs = [multiprocessing.get_context("spawn").Process(target=_writer, args=(path, n * 100)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    cache = Cache(path)
    assert len(cache) == 300 and cache.get("k250").text == "250"


def test_openai_compatible_server_is_called_once_then_cached(tmp_path):
    settings = {"cache": str(tmp_path / "c.sqlite")}
    with FakeAPI() as api:
        spec = {"provider": "openai", "model": "tiny", "base_url": api.openai_url, "keyless": True}
        first = make_llm("srv", spec, settings).run(ask("hello", "world", max_tokens=8))
        second = make_llm("srv", spec, settings).run(ask("hello", "world", max_tokens=8))
        assert len(api.requests) == 2
    assert [r.text for r in first] == [r.text for r in second] and "hello" in first[0].text
    assert all(r.cached for r in second)


def test_breaker_opens_on_failures_in_a_row_and_a_success_resets_the_count():
    from alpacare.llm.breaker import CircuitBreaker

    breaker = CircuitBreaker(failures=3, rate=1.0, window=100)
    ended = lambda ok: breaker.record(ok, time.monotonic())  # noqa: E731  (one call at a time)
    assert [ended(ok) for ok in (False, False, True, False, False)] == [None] * 5
    assert ended(False) == "failed 3 attempts in a row"


def test_breaker_counts_the_calls_in_flight_when_failures_began_once():
    """A blip fails every call in flight at once: one event. Attempts sent after it count."""
    from alpacare.llm.breaker import CircuitBreaker

    breaker = CircuitBreaker(failures=3, rate=1.0, window=10, concurrency=64)
    sent_before = time.monotonic()
    assert [breaker.record(False, sent_before) for _ in range(64)] == [None] * 64
    assert breaker.streak == 1 and breaker.window == 256  # the rate: over 4 x 64 attempts
    assert breaker.record(False, time.monotonic()) is None  # a retry sent after the blip
    assert breaker.record(False, time.monotonic()) == "failed 3 attempts in a row"


def test_breaker_opens_on_a_failure_rate_once_its_window_is_full():
    from alpacare.llm.breaker import CircuitBreaker

    breaker = CircuitBreaker(failures=3, rate=0.75, window=4)
    ended = lambda ok: breaker.record(ok, time.monotonic())  # noqa: E731
    assert [ended(ok) for ok in (False, True, False)] == [None] * 3  # the window is not full yet
    assert ended(True) is None  # 2 of the last 4 failed
    assert ended(False) is None  # 2 of 4 (the oldest failure left the window)
    assert ended(False) == "failed 3 of its last 4 attempts"  # 2 in a row only


class SlowThenDown(Scripted):
    """Two calls hang (a slow endpoint) while the others succeed; then one item fails."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def complete_one(self, request):
        text = request.messages[-1][1]
        if text.startswith("slow"):
            self.release.wait(5)
        if text == "down":
            raise LLMError("400 bad request")
        return super().complete_one(request)


def test_slow_calls_in_flight_never_open_the_breaker():
    """Calls that hang while others succeed, and a failure while they hang, do not open it:
    only ended attempts count, and only failures."""
    provider = SlowThenDown()
    llm = LLM(provider, max_concurrency=3, breaker_failures=2, breaker_rate=0.5, breaker_window=4)
    timer = threading.Timer(1.0, provider.release.set)
    timer.start()
    responses = llm.run(ask("slow 1", "slow 2", "a", "down", "b", "c", "d"))
    timer.cancel()
    assert [r.ok for r in responses] == [True, True, True, False, True, True, True]
