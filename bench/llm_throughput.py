"""Throughput of the LLM layer against a server with a fixed artificial latency.

Fifty waves of chat requests at each concurrency (1,600 at 32) go through make_llm(...).run()
(the real openai client, cache and ledger included) to an OpenAI-format server on 127.0.0.1
that answers each call after LATENCY seconds; the server runs in its own process so it does not share our GIL.
The ideal rate at concurrency C is C / LATENCY calls per second.

    python bench/llm_throughput.py [--waves 50] [--latency 0.2] [--concurrency 32]

Fixed costs (client construction, the first connections, the cache lookups before the first
call) weigh on a short run: at 640 calls the share was about 0.02 lower than at 1,600.

Last line: the achieved share of the ideal rate at concurrency 32, and the speedup over
sequential calls (measured on a sample in the same run).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def serve(latency: float, port_queue, stop) -> None:
    from fakeapi import FakeAPI

    with FakeAPI(delay=latency) as api:
        port_queue.put(api.openai_url)
        stop.wait()


CPU_MS: dict[str, float] = {}  # client CPU per call (this process: SDK, cache, ledger, threads)


def timed_run(url: str, n: int, concurrency: int, tag: str, workdir: Path) -> float:
    from alpacare.llm import Request, make_llm

    spec = {"provider": "openai", "model": "bench", "base_url": url, "keyless": True, "price": {"input": 1, "output": 2}}
    settings = {"cache": str(workdir / tag), "ledger": str(workdir / "ledger"),
                "max_concurrency": concurrency, "progress_seconds": 3600}
    llm = make_llm("bench", spec, settings, rule="bench")
    requests = [Request.chat("bench", f"{tag} question {i}: what is the usual dose?", max_tokens=64) for i in range(n)]
    start, cpu = time.perf_counter(), time.process_time()
    responses = llm.run(requests)
    seconds = time.perf_counter() - start
    CPU_MS[tag] = (time.process_time() - cpu) / n * 1000
    assert all(r.ok for r in responses), [r.error for r in responses if not r.ok][:3]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waves", type=int, default=50, help="calls per concurrency level / concurrency")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sequential-sample", type=int, default=10)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    port_queue, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(args.latency, port_queue, stop), daemon=True)
    server.start()
    url = port_queue.get(timeout=60)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            timed_run(url, 4, 4, "warmup", workdir)  # imports, first connections
            seq = timed_run(url, args.sequential_sample, 1, "sequential", workdir) / args.sequential_sample
            results = {}
            for c in sorted({4, args.concurrency}):
                calls = c * args.waves
                seconds = timed_run(url, calls, c, f"c{c}", workdir)
                rate, ideal = calls / seconds, c / args.latency
                results[c] = rate / ideal
                print(f"concurrency {c:3d}: {calls} calls in {seconds:.2f}s = {rate:.1f} calls/s, "
                      f"ideal {ideal:.1f} -> {rate / ideal:.2f} of ideal; client CPU {CPU_MS[f'c{c}']:.1f} ms/call")
            print(f"sequential: {seq * 1000:.0f} ms per call ({1 / seq:.1f} calls/s; latency {args.latency * 1000:.0f} ms)")
            speedup = results[args.concurrency] * args.concurrency / args.latency * seq  # rate at C / sequential rate
            print(f"{results[args.concurrency]:.2f} of ideal at concurrency {args.concurrency}, "
                  f"{speedup:.1f}x over sequential")
    finally:
        stop.set()
        server.join(10)


if __name__ == "__main__":
    main()
