"""Merge the LLM cache's and the ledger's shards, when no job runs:

    python -m alpacare.compact [--configfile configs/paper.yaml]

The cache's shards (and a pre-shard `.cache/llm.sqlite`) go into one read-only SQLite file,
`<cache>/compacted.sqlite`, written aside and renamed into place; the ledger's shards into
`<ledger>/compacted.jsonl`. A merged shard is deleted only if it did not grow meanwhile; a
pre-shard file is renamed `*.migrated` (delete it once you trust the result). It refuses while
any shard was written in the last `--idle-minutes` (default 10): a job that still runs would
keep writing a shard that compaction deletes, and readers on other nodes hold the old
compacted file open. Nothing is lost either way: where the same key was answered twice, the
reply written first is kept, as readers choose it.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import yaml

from . import ledger, shards
from .llm import cache as llm_cache

DEFAULTS = {"cache": ".cache/llm", "ledger": "results/ledger"}


class StillRunning(RuntimeError):
    pass


def locations_from_config(configfiles: list[str]) -> dict:
    """llm.cache and llm.ledger as the run sees them: config.yaml, then each --configfile."""
    found = dict(DEFAULTS)
    for path in configfiles:
        llm = (yaml.safe_load(Path(path).read_text()) or {}).get("llm") or {}
        found.update({k: llm[k] for k in DEFAULTS if k in llm})
    return found


def shard_files(cache_path, ledger_path) -> list[Path]:
    cache_dir = llm_cache.locations(cache_path)[0] / llm_cache.SHARDS
    found = shards.files(cache_dir, llm_cache.DATA) + shards.files(cache_dir, llm_cache.INDEX)
    return found + [p for p in shards.files(ledger.locations(ledger_path)[0], ledger.SHARD_SUFFIX)
                    if p.name != ledger.COMPACTED]


def check_idle(files: list[Path], idle_minutes: float) -> None:
    now = time.time()
    recent = [(now - p.stat().st_mtime, p) for p in files if p.exists() and now - p.stat().st_mtime < idle_minutes * 60]
    if recent:
        age, newest = min(recent)
        raise StillRunning(
            f"{newest} was written {age / 60:.1f} minutes ago, by a job that may still run: compaction deletes the "
            f"shards it merged, so it must run when no job does. Wait until every job has finished (then "
            f"--idle-minutes 0), or lower --idle-minutes (now {idle_minutes:g}).")


def _fsync_replace(tmp: Path, final: Path) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _delete_unchanged(sizes: dict[Path, int]) -> list[Path]:
    """Delete the merged files that did not grow since they were read; the ones that did stay."""
    kept = []
    for path, size in sizes.items():
        try:
            if path.stat().st_size == size:
                path.unlink()
            else:
                kept.append(path)
        except FileNotFoundError:
            pass
    return kept


def _retire(legacy: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{legacy}{suffix}")
        if old.exists():
            os.replace(old, Path(f"{legacy}.migrated{suffix}"))


def compact_cache(path) -> dict:
    """Merge every shard, the old compacted store and a pre-shard file into a new compacted
    store. Returns counts."""
    directory, legacy = llm_cache.locations(path)
    shard_dir = directory / llm_cache.SHARDS
    data_files = shards.files(shard_dir, llm_cache.DATA)
    sizes = {p: p.stat().st_size for p in data_files}
    for data in data_files:
        index = data.with_suffix(llm_cache.INDEX)
        if index.exists():
            sizes[index] = index.stat().st_size
    final = directory / llm_cache.COMPACTED
    if not data_files and not legacy.is_file():
        return {"replies": len(llm_cache.Cache(path)), "shards": 0, "kept": 0}
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{llm_cache.COMPACTED}.tmp.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    db = sqlite3.connect(tmp)
    db.execute("PRAGMA journal_mode=OFF")  # a half-written file is simply not renamed into place
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TABLE replies (key TEXT PRIMARY KEY, request TEXT, response TEXT)")
    insert = "INSERT OR IGNORE INTO replies VALUES (?, ?, ?)"  # the first writer's reply stays
    for source in (final, legacy):
        if source.is_file():
            old = llm_cache.open_sqlite(source)
            db.executemany(insert, old.execute("SELECT key, request, response FROM replies"))
            old.close()
    for data in data_files:
        db.executemany(insert, ((r["key"], json.dumps(r["request"], ensure_ascii=False),
                                 json.dumps(r["response"], ensure_ascii=False)) for r in llm_cache.read_shard(data)))
    db.commit()
    replies = db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    db.close()
    _fsync_replace(tmp, final)
    kept = _delete_unchanged(sizes)
    if legacy.is_file():
        _retire(legacy)
    return {"replies": replies, "shards": len(data_files), "kept": len(kept)}


def compact_ledger(path) -> dict:
    directory, legacy = ledger.locations(path)
    sources = ledger.sources(path)
    if not sources or sources == [directory / ledger.COMPACTED]:
        return {"lines": len(ledger.read(path)), "shards": 0, "kept": 0}
    sizes = {p: p.stat().st_size for p in sources if p != legacy and p.name != ledger.COMPACTED}
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{ledger.COMPACTED}.tmp.{os.getpid()}"
    lines = 0
    with open(tmp, "wb") as out:
        for source in sources:  # whole lines, verbatim; a torn last line is left out
            with open(source, "rb") as f:
                for line in f:
                    if line.endswith(b"\n"):
                        out.write(line)
                        lines += 1
    _fsync_replace(tmp, directory / ledger.COMPACTED)
    kept = _delete_unchanged(sizes)
    if legacy.is_file():
        _retire(legacy)
    return {"lines": lines, "shards": len(sizes), "kept": len(kept)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alpacare.compact", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="the run's config files (after config.yaml)")
    parser.add_argument("--directory", default=".", help="the project directory")
    parser.add_argument("--idle-minutes", type=float, default=10.0,
                        help="refuse while a shard was written more recently than this (default 10)")
    args = parser.parse_args(argv)
    root = Path(args.directory)
    configs = ([root / "config.yaml"] if (root / "config.yaml").exists() else []) + [root / c for c in args.configfile]
    where = {k: root / v for k, v in locations_from_config(configs).items()}
    try:
        check_idle(shard_files(where["cache"], where["ledger"]), args.idle_minutes)
    except StillRunning as err:
        print(f"compact: {err}", file=sys.stderr)
        return 1
    cache = compact_cache(where["cache"])
    print(f"cache {where['cache']}: {cache['replies']} replies in {llm_cache.locations(where['cache'])[0] / llm_cache.COMPACTED}"
          f", {cache['shards']} shards merged, {cache['kept']} kept (they grew meanwhile)")
    book = compact_ledger(where["ledger"])
    print(f"ledger {where['ledger']}: {book['lines']} lines in {ledger.locations(where['ledger'])[0] / ledger.COMPACTED}"
          f", {book['shards']} shards merged, {book['kept']} kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
