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
    fill(tmp_path / "llm", range(2, 6), label="respond").close()  # 2 is in both: the old file's reply stays
    fill(tmp_path / "llm", range(6, 8), label="judge").close()  # jobs that ended: their writers' locks are gone
    before = {k: (req, resp) for k, req, resp in Cache(tmp_path / "llm").records()}
    assert Cache(tmp_path / "llm").get(key(2)).text == "old 2"
    assert compact.compact_cache(tmp_path / "llm") == {"replies": 8, "shards": 2, "kept": 0}
    assert sorted(p.name for p in (tmp_path / "llm").iterdir()) == [COMPACTED, SHARDS]
    assert not list((tmp_path / "llm" / SHARDS).iterdir())
    assert (tmp_path / "llm.sqlite.migrated").exists() and not (tmp_path / "llm.sqlite").exists()
    after = Cache(tmp_path / "llm")
    assert {k: (req, resp) for k, req, resp in after.records()} == before
    assert after.get(key(2)).text == "old 2" and after.get(key(7)).text == "reply 7"
    fill(tmp_path / "llm", [8]).close()  # runs after compaction write shards again
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


# --- one reply per request, everywhere ----------------------------------------------------

def test_every_reader_picks_the_earliest_written_reply_of_a_key_two_jobs_paid_for(tmp_path):
    """The later writer's shard sorts first by name ("aaa" < "zzz"): a reader once served
    whichever its index met first, and another reader or compaction could keep the other."""
    path = tmp_path / "llm"
    late_starter = Cache(path, label="zzz")
    late_starter.put(key(1), {"n": 1}, Response(text="Output (a)"))
    Cache(path, label="aaa").put(key(1), {"n": 1}, Response(text="Output (b)"))
    reader = Cache(path)
    assert reader.get(key(1)).text == "Output (a)"
    assert reader.has_others(key(1))
    assert [r[2]["text"] for r in reader.records()] == ["Output (a)"]
    from alpacare.llm.cache import chosen_records, choose, read_shard

    data_files = shard_files(path, ".jsonl")
    assert [r["response"]["text"] for r in chosen_records(data_files)] == ["Output (a)"]
    candidates = [r for data in data_files for r in read_shard(data)]
    assert choose(candidates)["response"]["text"] == "Output (a)" == choose(candidates[::-1])["response"]["text"]
    late_starter.refresh()
    assert late_starter.get(key(1)).text == "Output (a)"


def test_a_running_job_takes_the_replies_another_job_stored_meanwhile(tmp_path, monkeypatch):
    """Job B has 10 requests; while it asks the first, job A stores replies to the other 9.
    B looked at the cache only when its run began, and paid for all 10."""
    from alpacare.llm import LLM, Provider, Request, client

    monkeypatch.setattr(client, "CACHE_REFRESH_SECONDS", 0, raising=False)  # look before every request (no clock in the test)
    requests = [Request.chat("m", f"q{i}") for i in range(10)]
    job_a = LLM(Provider(), Cache(tmp_path / "llm", label="judge"))

    class Slow(Provider):
        name = "base"  # the same endpoint as job A's
        calls = []

        def complete_one(self, request):
            if not self.calls:  # job A answers the others while this one is in flight
                for other in requests:
                    if other != request:
                        job_a.cache.put(job_a.key(other), other.as_dict(), Response(text="from A"))
            self.calls.append(request)
            return Response(text="from B")

    job_b = LLM(Slow(), Cache(tmp_path / "llm", label="judge"), max_concurrency=1)
    responses = job_b.run(requests)
    assert len(Slow.calls) == 1 and sorted(r.text for r in responses) == ["from A"] * 9 + ["from B"]
    assert job_b.ledger.calls == 1 and job_b.ledger.cache_hits == 9


def test_two_jobs_ask_shared_requests_in_different_orders(tmp_path):
    from alpacare.llm import LLM, Provider, Request

    class Recorder(Provider):
        def __init__(self):
            self.asked = []

        def complete_one(self, request):
            self.asked.append(request.messages[-1][1])
            return Response(text="ok")

    requests = [Request.chat("m", f"q{i}") for i in range(30)]
    first, second = Recorder(), Recorder()
    LLM(first, Cache(tmp_path / "one"), max_concurrency=1).run(requests)
    LLM(second, Cache(tmp_path / "two"), max_concurrency=1).run(requests)
    assert sorted(first.asked) == sorted(second.asked) and first.asked != second.asked


def test_a_verdict_and_the_bundle_agree_when_two_jobs_paid_for_one_judgment(tmp_path):
    """Two judge jobs ask the same judgments at once (the same output imported under two
    names); the endpoint answers them differently. Each verdict file once kept its own job's
    reply, and the bundle could ship the other ("Output (b)" for a row that said (a))."""
    import threading

    from alpacare import bundle, judge
    from alpacare.io import write_jsonl
    from alpacare.llm import LLM, Provider, Request

    both_asking = threading.Barrier(2)

    class Judge(Provider):
        name = "judge-endpoint"

        def __init__(self, verdict):
            self.verdict = verdict

        def complete_one(self, request):
            both_asking.wait(10)  # both jobs have the request in flight: both pay
            return Response(text=self.verdict)

    requests = [((f"item{i}", "reference_first"), Request.chat("judge", f"which output is better? {i}")) for i in range(4)]
    files = {}

    def job(name, verdict):
        llm = LLM(Judge(verdict), Cache(tmp_path / "llm", label="judge"), max_concurrency=1)
        llm._order_salt = "same"  # the worst case: both meet every shared request together
        responses = llm.run([r for _, r in requests])
        keys = {tag: [llm.key(r)] for tag, r in requests}
        rows = judge.verdicts([(tag, resp) for (tag, _), resp in zip(requests, responses)], "generate", 0.0, keys=keys)
        files[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(files[name], rows)

    threads = [threading.Thread(target=job, args=args) for args in (("one", "Output (a)"), ("two", "Output (b)"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(files) == 2
    bundle.write_bundle(tmp_path / "bundle", config={"llm": {"cache": str(tmp_path / "llm")}}, configfiles=[],
                        cache=Cache(tmp_path / "llm"), verdict_files=list(files.values()), result_files=[], lock_files=[])
    bundled = {e["key"]: e["response"]["text"] for e in map(json.loads, (tmp_path / "bundle/cache.jsonl").read_text().splitlines())}
    rows = [row for path in files.values() for row in map(json.loads, path.read_text().splitlines())]
    assert len(rows) == 8 and all(bundled[row["cache_keys"][-1]] == row["reply"] for row in rows)


def test_a_quiet_stretch_after_a_write_is_still_synced(monkeypatch):
    """"A node that dies loses at most SYNC_SECONDS": the fsync came only with a later write,
    so the last reply before a quiet stretch (a long local batch, the end of a stage) could
    sit unsynced for as long as the stretch lasted."""
    import os
    import tempfile
    import threading

    synced, real_fsync = threading.Event(), os.fsync
    monkeypatch.setattr(shards, "SYNC_SECONDS", 0.05)
    with tempfile.TemporaryDirectory() as tmp:
        appender = shards.Appender(os.path.join(tmp, "shard.jsonl"))
        appender.write(b"first\n")  # the first write: not synced (synced at creation, less than 0.05 s ago)

        def fsync(fd):
            real_fsync(fd)
            synced.set()

        monkeypatch.setattr(os, "fsync", fsync)
        assert synced.wait(30), "no fsync without a further write"
        monkeypatch.undo()
        appender.close()


def tree(directory):
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def test_an_old_cache_left_with_wal_content_is_read_without_writing_beside_it(tmp_path):
    """A pre-shard cache whose writer died with its WAL unmerged: opened `mode=ro`, SQLite
    wrote the shared `-shm` index beside it (read marks), on a filesystem other jobs share."""
    writer = old_cache(tmp_path / "llm.sqlite", range(3), keep_open=True)
    before = tree(tmp_path)
    assert "llm.sqlite-wal" in before
    cache = Cache(tmp_path / "llm")
    assert cache.get(key(1)).text == "old 1" and len(cache) == 3
    cache.close()
    assert tree(tmp_path) == before
    writer.close()


# --- canonical keys of local models ------------------------------------------------------

def model_dir(path, transformers_version="4.46.0", weights=b"\x00" * 64, dtype_name="torch_dtype"):
    path.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 8, dtype_name: "bfloat16",
              "transformers_version": transformers_version, "_name_or_path": str(path)}
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "transformers_version": transformers_version}))
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_a_local_model_is_known_by_its_content_not_the_library_that_wrote_it(tmp_path):
    """An upgrade of transformers rewrites config.json with its own version (and `dtype` for
    `torch_dtype`): every local reply was re-keyed, and a bundle made with one version could
    not be replayed with the next."""
    from alpacare.checkpoints import fingerprint, model_identity
    from alpacare.llm.local import LocalProvider

    before = model_dir(tmp_path / "a")
    upgraded = model_dir(tmp_path / "b", transformers_version="4.57.1", dtype_name="dtype")
    assert fingerprint(before) != fingerprint(upgraded)  # the bytes differ...
    assert model_identity(before) == model_identity(upgraded)  # ...what decides a reply does not
    assert model_identity(model_dir(tmp_path / "c", weights=b"\x01" * 64)) != model_identity(before)
    identity = LocalProvider(str(before)).identity()
    assert identity["weights"] == model_identity(before) and identity["precision"] == "fp32"  # a CPU here
    assert LocalProvider(str(before)).legacy_identity()["weights"] == fingerprint(before)


def test_vllm_replies_are_keyed_by_precision_and_tensor_parallel_size(tmp_path, monkeypatch):
    import sys
    import types

    from alpacare import hardware
    from alpacare.llm.vllm_local import VLLMProvider

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(__version__="0.11.0"))  # the version is all it reads
    provider = VLLMProvider(str(model_dir(tmp_path / "m")))
    seen = []
    for gpus, precision in ((1, "bf16"), (2, "bf16"), (2, "fp16")):
        monkeypatch.setattr(hardware, "visible_gpus", lambda gpus=gpus: gpus)
        monkeypatch.setattr(hardware, "precision", lambda precision=precision: precision)
        seen.append(cache_key("vllm-local", provider.identity(), {"n": 1}))
    assert len(set(seen)) == 3
