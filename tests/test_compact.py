"""Compaction while jobs may run: a writer that keeps writing through it loses nothing and is
counted once, two compactions never run at once, repeated ones (and one after a crash between
its rename and its deletes) never merge a line twice, and it refuses while this workflow's
Snakemake lock is held or squeue lists one of its jobs."""

import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from alpacare import compact, ledger, shards
from alpacare.llm import Cache, Response
from alpacare.llm.cache import SHARDS, cache_key

SPAWN = multiprocessing.get_context("spawn")


def key(i) -> str:
    return cache_key("p", {}, {"n": i})


def call(cache, book, i):
    """What a paid call leaves: its reply, then its ledger line ($1)."""
    cache.put(key(i), {"n": i}, Response(text=f"reply {i}"))
    book.append([{"rule": "respond", "calls": 1, "cost_usd": 1.0, "n": i}])


def totals(root):
    rows = ledger.read(root / "ledger")
    return len(rows), sum(r["cost_usd"] for r in rows), len(Cache(root / "llm"))


def _live_writer(root, rounds, wrote, go):
    cache, book = Cache(root / "llm", label="respond"), ledger.Writer(root / "ledger", "respond")
    for r in range(rounds):
        call(cache, book, 2 * r)
        call(cache, book, 2 * r + 1)
        wrote.release()
        go.acquire()  # the test compacts here, while this process still has its shards open
    cache.close()


def test_a_writer_that_keeps_writing_through_compactions_loses_nothing_and_counts_once(tmp_path):
    finished = Cache(tmp_path / "llm", label="done")  # a job that ended before: merged and deleted
    done = ledger.Writer(tmp_path / "ledger", "done")
    call(finished, done, 100)
    finished.close()
    done.close()
    wrote, go = SPAWN.Semaphore(0), SPAWN.Semaphore(0)
    rounds = 4
    writer = SPAWN.Process(target=_live_writer, args=(tmp_path, rounds, wrote, go))
    writer.start()
    try:
        for r in range(rounds):
            assert wrote.acquire(timeout=120)
            compact.compact_cache(tmp_path / "llm")
            compact.compact_ledger(tmp_path / "ledger")
            calls = 2 * (r + 1) + 1
            assert totals(tmp_path) == (calls, float(calls), calls)  # no line counted twice, none lost
            live = [p for p in shards.files(tmp_path / "ledger", ".jsonl") if ".respond." in p.name]
            assert len(live) == 1  # the live writer's shard stays where it writes
            go.release()
    finally:
        for _ in range(rounds):  # a failed check does not leave the writer waiting
            go.release()
        writer.join(120)
    assert writer.exitcode == 0
    assert totals(tmp_path) == (2 * rounds + 1, 2 * rounds + 1.0, 2 * rounds + 1)
    assert compact.compact_cache(tmp_path / "llm") == {"replies": 9, "shards": 1, "kept": 0}
    assert compact.compact_ledger(tmp_path / "ledger") == {"lines": 9, "shards": 1, "kept": 0}
    assert totals(tmp_path) == (9, 9.0, 9)
    assert not shards.files(tmp_path / "llm" / SHARDS, ".jsonl")
    assert [p.name for p in (tmp_path / "ledger").iterdir()] == ["compacted.jsonl"]


def test_repeated_compactions_and_one_cut_before_its_deletes_count_each_line_once(tmp_path, monkeypatch):
    cache, book = Cache(tmp_path / "llm", label="a"), ledger.Writer(tmp_path / "ledger", "a")
    for i in range(4):
        call(cache, book, i)
    # the writer is taken as finished (another host, a filesystem without locks): its shard is
    # merged while it may still write
    unseen = lambda path: None  # noqa: E731
    with monkeypatch.context() as m:  # a compaction killed after its rename, before its deletes
        m.setattr(compact, "_delete_unchanged", lambda sizes: [])
        compact.compact_cache(tmp_path / "llm", live=unseen)
        compact.compact_ledger(tmp_path / "ledger", live=unseen)
    assert len(shards.files(tmp_path / "ledger", ".jsonl")) == 2  # the shard and the compacted file
    call(cache, book, 4)  # ... and the same writer wrote on meanwhile: only these bytes are new
    for _ in range(3):
        compact.compact_cache(tmp_path / "llm", live=unseen)
        compact.compact_ledger(tmp_path / "ledger", live=unseen)
        assert totals(tmp_path) == (5, 5.0, 5)
    assert list(compact.read_manifest(tmp_path / "ledger" / "compacted.jsonl")) == [book.name]
    assert ledger.summarize(tmp_path / "ledger")[-1]["calls"] == 5


def _compact_after(root, start, results):
    start.wait()
    try:
        results.put(("cache", compact.compact_cache(root / "llm")["replies"]))
    except compact.CompactionRunning as err:
        results.put(("refused", str(err)))


def test_two_compactions_at_once_keep_every_reply(tmp_path):
    for i in range(4):  # four jobs, a reply each
        Cache(tmp_path / "llm", label=f"job{i}").put(key(i), {"n": i}, Response(text=f"reply {i}"))
    start, results = SPAWN.Barrier(2), SPAWN.Queue()
    procs = [SPAWN.Process(target=_compact_after, args=(tmp_path, start, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    outcomes = [results.get(timeout=10) for _ in procs]
    assert ("cache", 4) in outcomes
    assert len(Cache(tmp_path / "llm")) == 4 and Cache(tmp_path / "llm").get(key(3)).text == "reply 3"


def _hold_lock(directory, held, release):
    with compact.exclusive(directory):
        held.set()
        release.wait(120)


def test_a_second_compaction_stops_naming_the_first(tmp_path):
    Cache(tmp_path / "llm", label="job").put(key(0), {"n": 0}, Response(text="reply 0"))
    held, release = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold_lock, args=(tmp_path / "llm", held, release))
    holder.start()
    try:
        assert held.wait(120)
        with pytest.raises(compact.CompactionRunning, match=f"pid {holder.pid} on .*compact.lock"):
            compact.compact_cache(tmp_path / "llm")
        assert len(shards.files(tmp_path / "llm" / SHARDS, ".jsonl")) == 1  # untouched
    finally:
        release.set()
        holder.join(120)
    assert compact.compact_cache(tmp_path / "llm")["replies"] == 1
    assert not (tmp_path / "llm" / compact.LOCK).exists()


def _lock_and_wait(path, held, release):
    import fcntl

    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    held.set()
    release.wait(120)


def test_a_shard_is_live_while_its_process_runs_or_its_writer_holds_a_lock(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        host = compact._this_host().pop()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        live = tmp_path / f"{stamp}.respond.{host}.{sleeper.pid}.abcdef.jsonl"
        live.write_text("")
        assert "still runs" in compact.live_writer(live)
        reused = tmp_path / f"20200101T000000.respond.{host}.{sleeper.pid}.abcdef.jsonl"  # pid of a later process
        reused.write_text("")
        assert compact.live_writer(reused) is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert compact.live_writer(live) is None
    elsewhere = tmp_path / f"{stamp}.respond.othernode.1.abcdef.jsonl"
    elsewhere.write_text("x\n")
    assert compact.live_writer(elsewhere) is None
    held, release = SPAWN.Event(), SPAWN.Event()
    locker = SPAWN.Process(target=_lock_and_wait, args=(elsewhere, held, release))
    locker.start()
    try:
        assert held.wait(120)
        assert "holds a lock" in compact.live_writer(elsewhere)
    finally:
        release.set()
        locker.join(120)
    assert compact.live_writer(elsewhere) is None


def finished_job(cache_dir):
    """A job that stored one reply and ended (its shard closed, so its writer's lock is gone)."""
    cache = Cache(cache_dir, label="job")
    cache.put(key(0), {"n": 0}, Response(text="reply 0"))
    cache.close()


def fake_squeue(tmp_path, monkeypatch, output):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "squeue").write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_it_refuses_while_snakemake_or_a_slurm_job_of_this_workflow_runs(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    finished_job(project / ".cache" / "llm")
    # squeue --me --noheader --format=%i|%j|%T|%Z as SLURM prints it (job name: the run's uuid)
    fake_squeue(tmp_path, monkeypatch, f"4242|2b1c1c5e-59f1-4b3a-a0de-6f6c1f2f7a11|RUNNING|{project}\n"
                                       f"4243|other|PENDING|{tmp_path / 'elsewhere'}\n")
    assert compact.main(["--directory", str(project)]) == 1
    err = capsys.readouterr().err
    assert "SLURM job 4242" in err and "RUNNING" in err and "4243" not in err
    fake_squeue(tmp_path, monkeypatch, f"4243|other|PENDING|{tmp_path / 'elsewhere'}\n")
    (project / ".snakemake" / "locks").mkdir(parents=True)
    (project / ".snakemake" / "locks" / "0.input.lock").write_text("")
    assert compact.main(["--directory", str(project)]) == 1
    assert "Snakemake holds its lock" in capsys.readouterr().err
    assert len(shards.files(project / ".cache" / "llm" / SHARDS, ".jsonl")) == 1  # nothing touched
    (project / ".snakemake" / "locks" / "0.input.lock").unlink()
    assert compact.main(["--directory", str(project)]) == 0
    assert "1 replies" in capsys.readouterr().out
    assert not shards.files(project / ".cache" / "llm" / SHARDS, ".jsonl")


def test_without_squeue_it_says_so_and_relies_on_the_rest(tmp_path, monkeypatch, capsys):
    finished_job(tmp_path / ".cache" / "llm")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert compact.main(["--directory", str(tmp_path)]) == 0
    assert "squeue not found" in capsys.readouterr().err


def test_compaction_keeps_the_reply_every_reader_serves(tmp_path):
    """Two jobs paid for one request: the compacted store keeps the earliest written reply, the
    one readers served before it ran; where that reply is in a shard still being written, the
    store leaves the key to the shard, so readers go on serving the same reply."""
    early, late = Cache(tmp_path / "llm", label="early"), Cache(tmp_path / "llm", label="late")
    early.put(key(1), {"n": 1}, Response(text="Output (a)"))
    late.put(key(1), {"n": 1}, Response(text="Output (b)"))
    late.put(key(2), {"n": 2}, Response(text="late only"))
    late.close()
    assert Cache(tmp_path / "llm").get(key(1)).text == "Output (a)"
    compact.compact_cache(tmp_path / "llm")  # `early` still writes: its shard stays, unmerged
    store = compact.llm_cache.open_sqlite(tmp_path / "llm" / compact.llm_cache.COMPACTED)
    assert [k for (k,) in store.execute("SELECT key FROM replies")] == [key(2)]
    assert Cache(tmp_path / "llm").get(key(1)).text == "Output (a)"
    early.close()
    compact.compact_cache(tmp_path / "llm")
    assert Cache(tmp_path / "llm").get(key(1)).text == "Output (a)"
    assert len(Cache(tmp_path / "llm")) == 2
