"""The client around every provider: cache, replay-only, retries, concurrency, ledger.
The provider here is a scripted in-process one; the real API providers run through the
same client against a wire-format server at the end of this file."""

import json
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


# --- a failed write stops the job ---------------------------------------------------------

QUESTION = "Which findings suggest community-acquired pneumonia in an adult with fever and cough? " * 12


def storage_spec(url):
    return {"provider": "openai", "model": "tiny", "base_url": url, "keyless": True, "price": {"input": 1, "output": 1}}


def storage_requests():
    return ask(*[f"{i}: {QUESTION}" for i in range(200)], max_tokens=400)


def _run_past_the_file_size_limit(url, settings, limit, out):
    """The kernel refuses to grow any file of this process past `limit` bytes (RLIMIT_FSIZE:
    EFBIG, as a full quota would refuse): the cache's shard fills first."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        make_llm("srv", storage_spec(url), settings, rule="respond").run(storage_requests())
        out.put(("finished", ""))
    except Exception as err:  # noqa: BLE001 (reported to the test)
        out.put((type(err).__name__, str(err)))


def rerun_pays_only_what_was_not_stored(api, settings, kept):
    before = len(api.answered)
    responses = make_llm("srv", storage_spec(api.openai_url), settings, rule="respond").run(storage_requests())
    assert all(r.ok for r in responses)
    assert len(api.answered) - before == 200 - kept


def test_a_cache_that_cannot_grow_stops_the_calls_at_once(tmp_path):
    """200 requests at concurrency 4; the cache's file may hold about 3 replies. Before, all 200
    were paid and 3 kept, and the error came at the end."""
    settings = {"cache": str(tmp_path / "llm"), "ledger": str(tmp_path / "ledger"), "max_concurrency": 4}
    with FakeAPI(delay=0.01) as api:
        out = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=_run_past_the_file_size_limit, args=(api.openai_url, settings, 8000, out))
        child.start()
        kind, message = out.get(timeout=120)
        child.join(60)
        kept = len(Cache(tmp_path / "llm"))
        assert kind == "StorageError", message
        assert "File too large" in message and str(tmp_path / "llm" / "shards") in message
        assert 1 <= kept and len(api.answered) <= kept + 4  # at most the calls in flight beyond those kept
        assert sum(row["calls"] for row in ledger.read(tmp_path / "ledger")) == len(api.answered)
        rerun_pays_only_what_was_not_stored(api, settings, kept)


def test_a_ledger_that_cannot_be_written_stops_the_calls_at_once(tmp_path, monkeypatch):
    """The ledger's disk is full after 5 lines (ENOSPC on write); the replies still go to the
    cache, which is on another disk."""
    import errno
    import os

    ledger_dir, real_write, written = str(tmp_path / "ledger"), os.write, []

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(ledger_dir):
            if len(written) >= 5:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written.append(fd)
        return real_write(fd, data)

    settings = {"cache": str(tmp_path / "llm"), "ledger": ledger_dir, "max_concurrency": 4}
    with FakeAPI(delay=0.01) as api:
        monkeypatch.setattr(os, "write", write)
        with pytest.raises(Exception) as stopped:
            make_llm("srv", storage_spec(api.openai_url), settings, rule="respond").run(storage_requests())
        monkeypatch.undo()
        assert type(stopped.value).__name__ == "StorageError"
        assert "No space left on device" in str(stopped.value) and ledger_dir in str(stopped.value)
        assert len(api.answered) <= 5 + 4
        kept = len(Cache(tmp_path / "llm"))
        assert kept == len(api.answered)  # every reply paid was stored, the ledger's failure aside
        rerun_pays_only_what_was_not_stored(api, settings, kept)


# --- canonical keys -------------------------------------------------------------------------

def test_numbers_compare_by_value_and_the_default_endpoint_is_the_unset_one(tmp_path):
    from alpacare.llm.anthropic_api import AnthropicProvider
    from alpacare.llm.openai_api import OpenAIProvider

    as_int, as_float = Request.chat("m", "a", temperature=1).as_dict(), Request.chat("m", "a", temperature=1.0).as_dict()
    assert cache_key("p", {}, as_int) == cache_key("p", {}, as_float)
    assert cache_key("p", {}, {**as_float, "max_tokens": 256.0}) == cache_key("p", {}, {**as_float, "max_tokens": 256})
    assert cache_key("p", {}, as_float) != cache_key("p", {}, {**as_float, "temperature": 1.5})
    provider = Scripted()
    LLM(provider, Cache(tmp_path / "llm")).run(ask("a", temperature=1.0))
    again = LLM(provider, Cache(tmp_path / "llm")).run(ask("a", temperature=1))
    assert len(provider.calls) == 1 and again[0].cached
    for kind, default in ((OpenAIProvider, "https://api.openai.com/v1"), (AnthropicProvider, "https://api.anthropic.com")):
        unset = kind().identity()
        assert kind(base_url=default).identity() == unset == kind(base_url=default + "/").identity()


def test_a_self_hosted_server_is_known_by_the_model_it_serves_not_its_address(tmp_path):
    """Resubmitted to another node, the server kept its model and lost every cached reply;
    serving another model under the same name at the same address returned the old replies."""
    settings = {"cache": str(tmp_path / "llm")}
    with FakeAPI() as first, FakeAPI() as moved, FakeAPI() as retrained:
        for server, root in ((first, "/models/tiny-v1"), (moved, "/models/tiny-v1"), (retrained, "/models/tiny-v2")):
            server.served["tiny"] = root
        spec = lambda api: {"provider": "openai", "model": "tiny", "base_url": api.openai_url, "keyless": True}  # noqa: E731
        make_llm("srv", spec(first), settings).run(ask("hello", max_tokens=8))
        assert make_llm("srv", spec(moved), settings).run(ask("hello", max_tokens=8))[0].cached
        assert not moved.requests
        assert not make_llm("srv", spec(retrained), settings).run(ask("hello", max_tokens=8))[0].cached
        assert len(retrained.requests) == 1
        identity = make_llm("srv", spec(first), settings).provider.identity()
        assert identity == {"served": {"model": "tiny", "root": "/models/tiny-v1"}} and "127.0.0.1" not in repr(identity)


def test_replies_stored_under_the_keys_before_canonical_ones_still_answer_and_old_bundles_replay(tmp_path):
    """A bundle made before: its replies under the old keys (an explicit default base_url,
    `temperature: 1`), its verdicts naming those keys. Replayed without a key or a network,
    every request is answered and the key a verdict records is the one it had."""
    from alpacare import bundle
    from alpacare.llm.cache import legacy_cache_key
    from alpacare.llm.openai_api import OpenAIProvider

    requests = ask("which is better, (a) or (b)?", "and now?", temperature=1, max_tokens=20)
    old_keys = [legacy_cache_key("openai", {"base_url": "https://api.openai.com/v1"}, r.as_dict()) for r in requests]
    (tmp_path / "old-bundle").mkdir()
    (tmp_path / "old-bundle/cache.jsonl").write_text("".join(
        json.dumps({"key": k, "response": Response(text=f"Output (a) {n}").to_json()}) + "\n" for n, k in enumerate(old_keys)))
    assert bundle.restore(tmp_path / "old-bundle", Cache(tmp_path / "llm")) == 2
    llm = LLM(OpenAIProvider(base_url="https://api.openai.com/v1"), Cache(tmp_path / "llm"), replay_only=True)
    assert llm._canonical_key(requests[0]) != old_keys[0]  # the key did change...
    assert [r.text for r in llm.run(requests)] == ["Output (a) 0", "Output (a) 1"]  # ...and the old reply answers
    assert [llm.key(r) for r in requests] == old_keys
