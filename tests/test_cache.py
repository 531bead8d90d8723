"""The LLM cache as shards: one writer per file, every reader merges them by the same keys,
a torn record is ignored, a pre-shard SQLite cache is still read (without WAL shared memory)
and migrated by compaction, which refuses while jobs may still write."""

import json
import multiprocessing
import sqlite3

import pytest

from alpacare import compact, shards
from alpacare.llm import Cache, Response
from alpacare.llm.cache import COMPACTED, INDEX, RECORD, SHARDS, cache_key, digest_of


def key(i) -> str:
    return cache_key("p", {}, {"n": i})


def fill(path, numbers, label="job"):
    cache = Cache(path, label=label)
    for i in numbers:
        cache.put(key(i), {"n": i}, Response(text=f"reply {i}", output_tokens=i))
    return cache


def shard_files(path, suffix):
    return shards.files(path / SHARDS, suffix)


def test_each_writer_has_its_own_shard_and_every_reader_merges_them(tmp_path):
    path = tmp_path / "llm"
    first = fill(path, range(0, 5), label="respond")
    fill(path, range(5, 10), label="judge")
    assert len(shard_files(path, ".jsonl")) == 2 and len(shard_files(path, INDEX)) == 2
    assert all(".respond." in p.name or ".judge." in p.name for p in shard_files(path, ".jsonl"))
    reader = Cache(path)
    assert len(reader) == 10 and reader.get(key(7)).text == "reply 7" and reader.get(key(7)).cached
    assert reader.get(key(10)) is None
    assert first.get(key(8)) is None  # opened before the second job wrote...
    first.refresh()
    assert first.get(key(8)).text == "reply 8"  # ...and sees it once it looks again


def _writer(path, start):
    fill(path, range(start, start + 100), label=f"proc{start}")


def test_concurrent_processes_write_separate_shards(tmp_path):
    path = tmp_path / "llm"
    procs = [multiprocessing.get_context("spawn").Process(target=_writer, args=(path, n * 100)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    cache = Cache(path)
    assert len(cache) == 300 and cache.get(key(250)).text == "reply 250"
    assert len(shard_files(path, ".jsonl")) == 3


def test_opening_reads_only_the_indexes(tmp_path, monkeypatch):
    """At a judge job's scale the replies are hundreds of MB: a reader loads 44 bytes a reply
    and reads a reply's line only when it is asked for."""
    fill(tmp_path / "llm", range(50))
    read = []
    original = shards.read_from
    monkeypatch.setattr(shards, "read_from", lambda path, offset: read.append(path.suffix) or original(path, offset))
    cache = Cache(tmp_path / "llm")
    assert read == [INDEX]
    assert cache.get(key(3)).text == "reply 3"


def test_a_torn_last_record_is_ignored_and_the_rest_is_read(tmp_path):
    path = tmp_path / "llm"
    fill(path, range(3)).close()
    (data,), (index,) = shard_files(path, ".jsonl"), shard_files(path, INDEX)
    with open(data, "ab") as f:
        f.write(b'{"key": "' + key(3).encode() + b'", "request": {"n"')  # killed mid-write
    with open(index, "ab") as f:
        f.write(RECORD.pack(digest_of(key(3)), data.stat().st_size, 10)[:20])
    cache = Cache(path)
    assert len(cache) == 3 and cache.get(key(2)).text == "reply 2" and cache.get(key(3)) is None
    assert [r[0] for r in cache.records()] == [key(0), key(1), key(2)]


def test_an_index_record_ahead_of_its_reply_is_a_miss(tmp_path):
    """On NFS another host may see the index before the data it points to."""
    path = tmp_path / "llm"
    fill(path, range(2)).close()
    (data,), (index,) = shard_files(path, ".jsonl"), shard_files(path, INDEX)
    with open(index, "ab") as f:
        f.write(RECORD.pack(digest_of(key(9)), data.stat().st_size, 200))
    cache = Cache(path)
    assert cache.get(key(9)) is None and cache.get(key(1)).text == "reply 1"


def old_cache(path, rows, keep_open=False):
    """A cache as the pre-shard code wrote it: one SQLite file in WAL mode."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE replies (key TEXT PRIMARY KEY, request TEXT, response TEXT)")
    with db:
        db.executemany("INSERT INTO replies VALUES (?, ?, ?)",
                       [(key(i), json.dumps({"n": i}), json.dumps(Response(text=f"old {i}").to_json())) for i in rows])
    if keep_open:
        return db
    db.close()


def test_a_pre_shard_cache_is_read_by_either_configured_name(tmp_path):
    old_cache(tmp_path / "llm.sqlite", range(4))
    assert not (tmp_path / "llm.sqlite-wal").exists()  # closed cleanly: opened immutable, no locks
    for configured in ("llm.sqlite", "llm"):  # what old configs say, and the new default
        cache = Cache(tmp_path / configured)
        assert len(cache) == 4 and cache.get(key(2)).text == "old 2"
    fill(tmp_path / "llm.sqlite", [4])
    assert (tmp_path / "llm" / SHARDS).is_dir()  # new replies go to the shard directory
    assert len(Cache(tmp_path / "llm")) == 5
    assert not (tmp_path / "llm.sqlite-wal").exists() and not (tmp_path / "llm.sqlite-shm").exists()


def test_a_pre_shard_cache_with_wal_content_pending_is_still_read(tmp_path):
    writer = old_cache(tmp_path / "llm.sqlite", range(3), keep_open=True)
    assert (tmp_path / "llm.sqlite-wal").stat().st_size > 0
    assert Cache(tmp_path / "llm").get(key(1)).text == "old 1"
    writer.close()


def test_compaction_merges_old_file_and_shards_and_readers_see_the_same(tmp_path):
    old_cache(tmp_path / "llm.sqlite", range(3))
    fill(tmp_path / "llm", range(2, 6), label="respond")  # 2 is in both: the old file's reply stays
    fill(tmp_path / "llm", range(6, 8), label="judge")
    before = {k: (req, resp) for k, req, resp in Cache(tmp_path / "llm").records()}
    assert Cache(tmp_path / "llm").get(key(2)).text == "old 2"
    assert compact.compact_cache(tmp_path / "llm") == {"replies": 8, "shards": 2, "kept": 0}
    assert sorted(p.name for p in (tmp_path / "llm").iterdir()) == [COMPACTED, SHARDS]
    assert not list((tmp_path / "llm" / SHARDS).iterdir())
    assert (tmp_path / "llm.sqlite.migrated").exists() and not (tmp_path / "llm.sqlite").exists()
    after = Cache(tmp_path / "llm")
    assert {k: (req, resp) for k, req, resp in after.records()} == before
    assert after.get(key(2)).text == "old 2" and after.get(key(7)).text == "reply 7"
    fill(tmp_path / "llm", [8])  # runs after compaction write shards again
    assert compact.compact_cache(tmp_path / "llm")["replies"] == 9


def test_compaction_keeps_a_shard_that_grew_while_it_ran(tmp_path):
    grew, same = tmp_path / "a", tmp_path / "b"
    grew.write_text("x")
    same.write_text("y")
    assert compact._delete_unchanged({grew: 0, same: 1}) == [grew]
    assert grew.exists() and not same.exists()


def test_a_miss_in_replay_only_mode_still_fails_with_shards(tmp_path):
    from alpacare.llm import LLM, CacheMiss, Provider, Request

    class Echo(Provider):
        name = "echo"

        def complete_one(self, request):
            return Response(text="re: " + request.messages[-1][1])

    LLM(Echo(), Cache(tmp_path / "llm")).run([Request.chat("m", "a")])
    replay = LLM(Echo(), Cache(tmp_path / "llm"), replay_only=True)
    assert replay.run([Request.chat("m", "a")])[0].text == "re: a"
    with pytest.raises(CacheMiss):
        replay.run([Request.chat("m", "b")])


def test_a_lookup_never_counts_the_whole_cache(tmp_path, monkeypatch):
    """`if cache:` once called __len__ (a pass over every reply) per request: a 52k replay
    took minutes instead of seconds."""
    from alpacare.llm import LLM, Provider, Request

    class Echo(Provider):
        name = "echo"

        def complete_one(self, request):
            return Response(text="re: " + request.messages[-1][1])

    LLM(Echo(), Cache(tmp_path / "llm")).run([Request.chat("m", str(i)) for i in range(5)])
    monkeypatch.setattr(Cache, "__len__", lambda self: pytest.fail("counted every reply"))
    assert Cache(tmp_path / "empty")  # an open cache is truthy, even empty
    replayed = LLM(Echo(), Cache(tmp_path / "llm"), replay_only=True).run([Request.chat("m", str(i)) for i in range(5)])
    assert all(r.cached for r in replayed)
