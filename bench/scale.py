"""The 52k drill: one paper-scale stage (AlpaCare's respond stage asks 52,000 questions)
through the real LLM layer (the openai SDK, the sharded cache and ledger, retries, the
breaker) against a local OpenAI-format server that answers after 50 ms and meets 2 % of the
requests with a fault of every kind (429, 500, 503, malformed and truncated 200s, resets,
hangs past the read timeout). The server runs in its own process, so it does not share our GIL.

    python bench/scale.py [--requests 52000] [--concurrency 64] [--latency 0.05] [--faults 0.02] [--workdir DIR]

Then the same stage replayed from the cache alone (replay-only: a miss would fail it).
Goal: one invocation, 0 duplicated calls, under 10 minutes at concurrency 64 on 2 cores, peak
RSS under 1 GB. Last line: wall minutes, peak RSS, cache size, ledger lines, duplicated calls;
the line before it: the replay.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SYSTEM = ("You are a medical expert answering a question. Think step by step only where it helps; a multiple-choice "
          "answer ends with 'The answer is (X).'")
FILLER = ("The patient is a 54-year-old with a history of hypertension and type 2 diabetes who presents with two days "
          "of fever, productive cough and pleuritic chest pain; examination finds crackles at the right base. ")


def serve(latency: float, faults: float, hang: float, queue, stop, report) -> None:
    from fakeapi import FakeAPI

    with FakeAPI(delay=latency) as api:
        api.hang_seconds = hang
        api.inject_faults(faults, seed=52)
        queue.put(api.openai_url)
        stop.wait()
        report.put({"requests": len(api.requests), "answered": len(api.answered), "unique": len(set(api.answered)),
                    "duplicated": len(api.answered_twice()), "faults": dict(api.faults)})


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=52_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--faults", type=float, default=0.02)
    parser.add_argument("--hang", type=float, default=10.0, help="seconds a hanging request holds its connection")
    parser.add_argument("--read-timeout", type=float, default=5.0)
    parser.add_argument("--workdir", help="where the cache and ledger go (default: a temporary directory)")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.ERROR)  # a retry warning per fault would flood the terminal
    from alpacare import ledger
    from alpacare.llm import Cache, Request, make_llm
    from alpacare.llm.cache import SHARDS

    ctx = multiprocessing.get_context("spawn")
    queue, stop, report = ctx.Queue(), ctx.Event(), ctx.Queue()
    server = ctx.Process(target=serve, args=(args.latency, args.faults, args.hang, queue, stop, report), daemon=True)
    server.start()
    url = queue.get(timeout=60)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        cache_dir, ledger_dir = workdir / ".cache/llm", workdir / "results/ledger"
        spec = {"provider": "openai", "model": "gpt-3.5-turbo-0613", "base_url": url, "keyless": True,
                "price": {"input": 1.5, "output": 2}, "timeout": {"connect": 5, "read": args.read_timeout}}
        settings = {"cache": str(cache_dir), "ledger": str(ledger_dir), "max_concurrency": args.concurrency,
                    "max_retries": 8, "backoff_seconds": 0.2, "max_backoff_seconds": 5, "progress_seconds": 3600}
        requests = [Request.chat(spec["model"], f"Task {i}: {FILLER * 6}What is the most likely diagnosis?", system=SYSTEM,
                                 max_tokens=300, temperature=1.0, top_p=1.0, presence_penalty=1.5, seed=i)
                    for i in range(args.requests)]

        start = time.perf_counter()
        responses = make_llm("gpt-3.5-turbo", spec, settings, rule="respond").run(requests)
        wall = time.perf_counter() - start
        failed = sum(not r.ok for r in responses)
        rss_stage = peak_rss_mb()
        del responses
        stop.set()
        served = report.get(timeout=60)
        server.join(30)
        print(f"stage: {args.requests} requests in {wall:.0f} s ({args.requests / wall:.0f} calls/s) at concurrency "
              f"{args.concurrency}, {args.latency * 1000:.0f} ms latency; {served['requests']} HTTP requests, faults "
              f"{served['faults']}; {failed} failed")

        shards = sorted((cache_dir / SHARDS).iterdir())
        print(f"on disk: {cache_dir}/{SHARDS}/ " + ", ".join(f"{p.name} ({p.stat().st_size / 2**20:.1f} MiB)" for p in shards))
        rows = ledger.read(ledger_dir)
        print(f"         {ledger_dir}/ " + ", ".join(f"{p.name} ({p.stat().st_size / 2**20:.1f} MiB)"
                                                 for p in sorted(ledger_dir.iterdir())))

        start = time.perf_counter()
        opened = Cache(cache_dir)
        open_seconds = time.perf_counter() - start
        replayed = make_llm("gpt-3.5-turbo", spec, {**settings, "replay_only": True}, rule="respond").run(requests)
        replay = time.perf_counter() - start
        assert all(r.ok and r.cached for r in replayed)
        size = len(opened)
        cache_mb = sum(p.stat().st_size for p in shards) / 2**20
        paid = sum(r.get("calls", 0) for r in rows)
        print(f"replay: {len(replayed)} requests from the cache in {replay:.1f} s ({len(replayed) / replay:.0f}/s; opening "
              f"the cache's index {open_seconds:.2f} s), 0 calls, peak RSS {peak_rss_mb():.0f} MB")
        print(f"{args.requests}-request stage in one invocation: {wall / 60:.1f} min wall, peak RSS {rss_stage:.0f} MB, "
              f"cache {size} replies ({cache_mb:.0f} MiB), ledger {len(rows)} lines ({paid} paid calls), "
              f"{served['duplicated']} duplicated")


if __name__ == "__main__":
    main()
