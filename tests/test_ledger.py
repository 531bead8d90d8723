"""The ledger file: appended per call, summed per rule and endpoint, torn lines skipped."""

from alpacare import ledger


def test_summarize_per_rule_and_endpoint_with_a_total(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, [
        {"rule": "respond", "endpoint": "gpt", "calls": 1, "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.5},
        {"rule": "respond", "endpoint": "gpt", "calls": 1, "failures": 1, "attempts": 3},
        {"rule": "respond", "endpoint": "gpt", "calls": 0, "cache_hits": 7},
        {"rule": "judge", "endpoint": "claude", "calls": 2, "input_tokens": 4, "cost_usd": 0.25},
    ])
    with open(path, "a") as f:
        f.write('{"rule": "judge", "endpoint": "claude", "calls": 1')  # torn by a kill mid-write
    rows = ledger.summarize(path)
    assert [(r["rule"], r["endpoint"]) for r in rows] == [("judge", "claude"), ("respond", "gpt"), ("total", "")]
    respond = rows[1]
    assert (respond["calls"], respond["cache_hits"], respond["failures"], respond["attempts"]) == (2, 7, 1, 3)
    assert rows[-1]["calls"] == 4 and rows[-1]["cost_usd"] == 0.75
    table = ledger.markdown(rows)
    assert table.startswith("| rule | endpoint | calls |") and "| total |" in table


def test_spend_watcher_reads_only_what_was_appended(tmp_path):
    path = tmp_path / "ledger.jsonl"
    watcher = ledger.SpendWatcher(path)
    assert watcher.total() == 0
    ledger.append(path, [{"cost_usd": 1.5}])
    assert watcher.total() == 1.5
    with open(path, "a") as f:
        f.write('{"cost_usd": 2.0')  # not finished yet: not counted
    assert watcher.total() == 1.5
    with open(path, "a") as f:
        f.write("}\n")
    assert watcher.total() == 3.5


def test_write_tables_for_the_ledger_rule(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger.append(path, [{"rule": "judge", "endpoint": "claude", "calls": 3, "cost_usd": 0.125}])
    ledger.write_tables(path, tmp_path / "ledger.md", tmp_path / "ledger.csv")
    assert "| judge | claude | 3 |" in (tmp_path / "ledger.md").read_text()
    lines = (tmp_path / "ledger.csv").read_text().splitlines()
    assert lines[0].startswith("rule,endpoint,calls,cache_hits,failures") and lines[-1].startswith("total,,3,")
    ledger.write_tables(tmp_path / "none.jsonl", tmp_path / "empty.md", tmp_path / "empty.csv")
    assert (tmp_path / "empty.md").read_text() == "No LLM calls recorded.\n"
