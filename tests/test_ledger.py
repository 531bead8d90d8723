"""The ledger: a shard per writer, appended per call, merged and summed per rule and endpoint,
torn lines skipped, a pre-shard single file still read."""

from alpacare import compact, ledger


def test_summarize_per_rule_and_endpoint_with_a_total(tmp_path):
    path = tmp_path / "ledger"
    first, second = ledger.Writer(path, "respond"), ledger.Writer(path, "judge")
    first.append([
        {"rule": "respond", "endpoint": "gpt", "calls": 1, "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.5},
        {"rule": "respond", "endpoint": "gpt", "calls": 1, "failures": 1, "attempts": 3},
    ])
    second.append([{"rule": "judge", "endpoint": "claude", "calls": 2, "input_tokens": 4, "cost_usd": 0.25}])
    first.append([{"rule": "respond", "endpoint": "gpt", "calls": 0, "cache_hits": 7}])
    with open(path / second.name, "a") as f:
        f.write('{"rule": "judge", "endpoint": "claude", "calls": 1')  # torn by a kill mid-write
    assert sorted(p.name for p in path.iterdir()) == sorted([first.name, second.name])  # one file per writer
    rows = ledger.summarize(path)
    assert [(r["rule"], r["endpoint"]) for r in rows] == [("judge", "claude"), ("respond", "gpt"), ("total", "")]
    respond = rows[1]
    assert (respond["calls"], respond["cache_hits"], respond["failures"], respond["attempts"]) == (2, 7, 1, 3)
    assert rows[-1]["calls"] == 4 and rows[-1]["cost_usd"] == 0.75
    table = ledger.markdown(rows)
    assert table.startswith("| rule | endpoint | calls |") and "| total |" in table


def test_a_pre_shard_ledger_file_is_read_beside_the_shards_by_either_name(tmp_path):
    (tmp_path / "ledger.jsonl").write_text('{"rule": "old", "endpoint": "e", "calls": 3, "cost_usd": 1.0}\n')
    ledger.append(tmp_path / "ledger", [{"rule": "new", "endpoint": "e", "calls": 1, "cost_usd": 0.5}])
    for configured in ("ledger", "ledger.jsonl"):  # the new default, and what old configs say
        assert ledger.total_cost(tmp_path / configured) == 1.5
        assert [r["rule"] for r in ledger.summarize(tmp_path / configured)] == ["new", "old", "total"]


def test_spend_watcher_reads_only_what_was_appended(tmp_path):
    path = tmp_path / "ledger"
    watcher = ledger.SpendWatcher(path)
    assert watcher.total() == 0
    other = ledger.Writer(path, "judge")
    other.append([{"cost_usd": 1.5}])
    assert watcher.total() == 1.5
    with open(path / other.name, "a") as f:
        f.write('{"cost_usd": 2.0')  # not finished yet: not counted
    assert watcher.total() == 1.5
    with open(path / other.name, "a") as f:
        f.write("}\n")
    assert watcher.total() == 3.5
    ledger.append(path, [{"cost_usd": 0.25}])  # a third job's shard
    assert watcher.total() == 3.75


def test_spend_watcher_leaves_out_the_callers_own_shard(tmp_path):
    path = tmp_path / "ledger"
    mine, theirs = ledger.Writer(path, "respond"), ledger.Writer(path, "judge")
    mine.append([{"cost_usd": 5.0}])
    theirs.append([{"cost_usd": 1.0}])
    assert ledger.SpendWatcher(path, exclude=lambda name: name == mine.name).total() == 1.0


def test_compaction_merges_the_shards_and_the_old_file_into_one(tmp_path):
    (tmp_path / "ledger.jsonl").write_text('{"rule": "old", "cost_usd": 1.0}\n{"rule": "torn"')
    for rule in ("respond", "judge", "judge"):
        ledger.append(tmp_path / "ledger", [{"rule": rule, "cost_usd": 0.5}])
    before = ledger.summarize(tmp_path / "ledger")
    assert compact.compact_ledger(tmp_path / "ledger") == {"lines": 4, "shards": 3, "kept": 0}
    assert sorted(p.name for p in (tmp_path / "ledger").iterdir()) == ["compacted.jsonl"]
    assert (tmp_path / "ledger.jsonl.migrated").exists() and not (tmp_path / "ledger.jsonl").exists()
    assert ledger.summarize(tmp_path / "ledger") == before
    ledger.append(tmp_path / "ledger", [{"rule": "later", "cost_usd": 0.25}])  # a run after compaction
    assert compact.compact_ledger(tmp_path / "ledger")["lines"] == 5
    assert ledger.total_cost(tmp_path / "ledger") == 2.75


def test_write_tables_for_the_ledger_rule(tmp_path):
    path = tmp_path / "ledger"
    ledger.append(path, [{"rule": "judge", "endpoint": "claude", "calls": 3, "cost_usd": 0.125}])
    ledger.write_tables(path, tmp_path / "ledger.md", tmp_path / "ledger.csv")
    assert "| judge | claude | 3 |" in (tmp_path / "ledger.md").read_text()
    lines = (tmp_path / "ledger.csv").read_text().splitlines()
    assert lines[0].startswith("rule,endpoint,calls,cache_hits,failures") and lines[-1].startswith("total,,3,")
    ledger.write_tables(tmp_path / "none", tmp_path / "empty.md", tmp_path / "empty.csv")
    assert (tmp_path / "empty.md").read_text() == "No LLM calls recorded.\n"


def test_a_writer_used_by_many_threads_keeps_one_shard(tmp_path):
    import threading

    writer = ledger.Writer(tmp_path / "ledger", "respond")
    start = threading.Barrier(16)

    def append(i):
        start.wait()
        writer.append([{"rule": "respond", "calls": 1, "n": i}])

    threads = [threading.Thread(target=append, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.name for p in (tmp_path / "ledger").iterdir()] == [writer.name]
    assert sorted(row["n"] for row in ledger.read(tmp_path / "ledger")) == list(range(16))


def test_a_failed_append_names_the_file_and_leaves_no_torn_line(tmp_path, monkeypatch):
    """A disk that fills in the middle of a line: the half written was left in the shard, and
    the next line glued onto it (both lost to every reader); the error named no file."""
    import errno
    import os

    import pytest

    writer = ledger.Writer(tmp_path / "ledger", "respond")
    writer.append([{"calls": 1}])
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match="No space left on device") as failed:
        writer.append([{"calls": 2, "cost_usd": 0.5}])
    monkeypatch.undo()
    assert str(tmp_path / "ledger" / writer.name) in str(failed.value)
    writer.append([{"calls": 3}])  # space again
    assert [row["calls"] for row in ledger.read(tmp_path / "ledger")] == [1, 3]
