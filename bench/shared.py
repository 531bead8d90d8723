"""The shared-requests drill: two jobs run at once (two processes, as two Snakemake jobs on two
nodes would) through the real LLM layer against a local OpenAI-format server, each asking
20,000 requests of which 10,000 the other asks too (the same output imported under two names,
two models that answer an item alike). Every reply goes to one sharded cache; each job looks
for the other's new replies before it asks, in an order of its own.

    python bench/shared.py [--requests 20000] [--shared 10000] [--concurrency 16] [--latency 0.05]

Goal: the shared requests paid twice stay under 1 % of the shared (100 of 10,000); without
the look-ups and the per-job order, both jobs meet the shared requests together and pay for
most of them twice. Last line: the duplicated calls.
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

from scale import FILLER, SYSTEM, serve  # noqa: E402  (the 52k drill's server and prompts)


def job(name: str, numbers: list[int], url: str, workdir: str, concurrency: int, start, out) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    from alpacare.llm import Request, make_llm

    spec = {"provider": "openai", "model": "gpt-3.5-turbo-0613", "base_url": url, "keyless": True,
            "price": {"input": 1.5, "output": 2}, "timeout": {"connect": 5, "read": 5}}
    settings = {"cache": f"{workdir}/.cache/llm", "ledger": f"{workdir}/results/ledger", "max_concurrency": concurrency,
                "max_retries": 8, "backoff_seconds": 0.2, "max_backoff_seconds": 5, "progress_seconds": 3600}
    requests = [Request.chat(spec["model"], f"Task {i}: {FILLER * 2}What is the most likely diagnosis?", system=SYSTEM,
                             max_tokens=300, temperature=1.0, seed=i) for i in numbers]
    llm = make_llm("gpt-3.5-turbo", spec, settings, rule="respond")  # one rule, two jobs: the same shard label
    start.wait()
    began = time.perf_counter()
    responses = llm.run(requests)
    out.put((name, time.perf_counter() - began, sum(r.ok for r in responses), llm.ledger.calls, llm.ledger.cache_hits))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000, help="requests of each job")
    parser.add_argument("--shared", type=int, default=10_000, help="of which the other job asks too")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    queue, stop, report = ctx.Queue(), ctx.Event(), ctx.Queue()
    server = ctx.Process(target=serve, args=(args.latency, 0.0, 10.0, queue, stop, report), daemon=True)
    server.start()
    url = queue.get(timeout=60)
    own = args.requests - args.shared
    shared = list(range(args.shared))
    jobs = {"A": shared + list(range(args.shared, args.shared + own)),
            "B": shared + list(range(args.shared + own, args.shared + 2 * own))}
    with tempfile.TemporaryDirectory() as workdir:
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=job, args=(name, numbers, url, workdir, args.concurrency, start, out))
                 for name, numbers in jobs.items()]
        for p in procs:
            p.start()
        time.sleep(5)  # both have imported and built their clients: they start together
        start.set()
        results = sorted(out.get(timeout=1800) for _ in procs)
        for p in procs:
            p.join(60)
        stop.set()
        served = report.get(timeout=60)
        server.join(30)
    for name, wall, ok, calls, hits in results:
        print(f"job {name}: {len(jobs[name])} requests in {wall:.0f} s, {ok} answered: {calls} paid, {hits} from the cache")
    unique = args.shared + 2 * own
    print(f"server: {served['answered']} replies for {unique} distinct requests")
    print(f"two concurrent jobs of {args.requests} requests sharing {args.shared}: {served['duplicated']} duplicated calls "
          f"({100 * served['duplicated'] / max(args.shared, 1):.2f} % of the shared)")


if __name__ == "__main__":
    main()
