"""Merge the LLM cache's and the ledger's shards:

    python -m alpacare.compact [--configfile configs/paper.yaml]

The cache's shards (and a pre-shard `.cache/llm.sqlite`) go into one read-only SQLite file,
`<cache>/compacted.sqlite`, written aside and renamed into place; the ledger's shards into
`<ledger>/compacted.jsonl`. A pre-shard file is renamed `*.migrated` (delete it once you trust
the result).

What keeps it safe while jobs may run, each checked rather than guessed from modification times:
- It refuses while this workflow's Snakemake lock is held (`.snakemake/locks/`) or `squeue`
  lists a job of yours whose working directory is this workflow's (the SLURM executor submits
  every job with `-D` the workflow directory); without `squeue` it says so and relies on the rest.
- One compaction at a time per store: each takes an exclusive lock (`compact.lock` in the
  cache's and the ledger's directory, a POSIX lock, which NFSv4 and NFSv3 with lockd both
  give); a second one stops naming the holder.
- A shard is merged and deleted only once its writer has finished: a shard whose writer still
  holds a lock on it, or whose process (named in the shard's name, `alpacare.shards`) still
  runs on this host and began before the shard, is left as it is, neither merged nor deleted,
  so no reader counts its lines twice and its writer loses nothing. A shard written on another
  host carries no lock today; it is taken as finished because no job of this workflow runs.
- Every merged shard is recorded with the bytes merged (the compacted store's manifest:
  a `merged` table, the ledger's first line), in the same file that holds its lines, so a
  repeated compaction, or one after a crash between the rename and the deletes, never merges a
  line twice; a shard that grew after it was merged is merged only for its new bytes.
Where several replies of one key meet, the one kept is the one every reader serves
(`alpacare.llm.cache.order`: the earliest written); a key whose earliest reply sits in a live
shard is left out of the compacted store, so readers keep serving that shard's reply.
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import errno
import fcntl
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import ledger, shards
from .llm import cache as llm_cache

DEFAULTS = {"cache": ".cache/llm", "ledger": "results/ledger"}
LOCK = "compact.lock"
# the compacted ledger's first line: not JSON as a whole, so every ledger reader skips it
LEDGER_MANIFEST = b"#alpacare-compact-manifest "
SQUEUE = ["squeue", "--me", "--noheader", "--format=%i|%j|%T|%Z"]


class StillRunning(RuntimeError):
    """A job of this workflow may still write: compaction waits until none runs."""


class CompactionRunning(RuntimeError):
    """Another compaction holds the lock."""


def locations_from_config(configfiles: list[str]) -> dict:
    """llm.cache and llm.ledger as the run sees them: config.yaml, then each --configfile."""
    found = dict(DEFAULTS)
    for path in configfiles:
        llm = (yaml.safe_load(Path(path).read_text()) or {}).get("llm") or {}
        found.update({k: llm[k] for k in DEFAULTS if k in llm})
    return found


# --- is anything of this workflow running? -------------------------------------------

def workflow_jobs(root: Path, squeue_text: str | None = None) -> list[str]:
    """Why compaction must wait: this workflow's Snakemake lock, and each SLURM job of the user
    whose working directory is `root` (one line each). Raises FileNotFoundError without squeue."""
    reasons = []
    locks = root / ".snakemake" / "locks"
    if locks.is_dir() and any(locks.iterdir()):
        reasons.append(f"Snakemake holds its lock in {locks} (a run is going on; if it was killed, "
                       f"`snakemake --unlock` with the same --configfile first)")
    if squeue_text is None:
        squeue_text = subprocess.run(SQUEUE, capture_output=True, text=True, check=True, timeout=60).stdout
    here = os.path.realpath(root)
    for line in squeue_text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4 and os.path.realpath(parts[3]) == here:
            reasons.append(f"SLURM job {parts[0]} ({parts[1]}) is {parts[2]} in {parts[3]}")
    return reasons


# --- is a shard's writer finished? ---------------------------------------------------

def _this_host() -> set[str]:
    return {socket.gethostname().split(".")[0], os.environ.get("SLURMD_NODENAME") or ""} - {""}


def shard_writer(name: str) -> tuple[str, int, float] | None:
    """(host, pid, the UTC second it began) from a shard's name (alpacare.shards.shard_name)."""
    parts = name.split(".")
    if len(parts) < 5 or not parts[3].isdigit():
        return None
    try:
        began = calendar.timegm(time.strptime(parts[0], "%Y%m%dT%H%M%S"))
    except ValueError:
        return None
    return parts[2], int(parts[3]), began


def process_started(pid: int) -> float | None:
    """When process `pid` of this host started (epoch seconds); None if none runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:  # no /proc: alive or not, its start unknown
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return 0.0
    ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks after boot
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def locked(path: Path) -> bool:
    """Whether another process holds a lock on `path` (a writer that locks its shard)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # releases this process's test lock
    return False


def live_writer(path: Path) -> str | None:
    """Who still writes shard `path` (None: its writer has finished)."""
    if locked(path):
        return f"{path.name}: its writer holds a lock on it"
    writer = shard_writer(path.name)
    if writer is None:
        return None
    host, pid, began = writer
    if host not in _this_host() or pid == os.getpid():  # another host: no job of this workflow runs
        return None
    started = process_started(pid)
    if started is not None and started <= began + 1:  # the same process, not a later one with its pid
        return f"{path.name}: process {pid} on {host} still runs"
    return None


# --- one compaction at a time -------------------------------------------------------

@contextlib.contextmanager
def exclusive(directory: Path):
    """Hold `directory`/compact.lock; a second compaction stops naming the holder. The file is
    removed on release, so a process that locked a removed file tries again on a fresh one."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if err.errno in (errno.EACCES, errno.EAGAIN):
                raise CompactionRunning(f"another compaction ({holder}) holds {path}: wait for it to finish") from None
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed it on release
    else:
        raise CompactionRunning(f"{path} keeps being replaced: another compaction is running")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


# --- merging ------------------------------------------------------------------------

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


def _whole_lines(path: Path, offset: int):
    """(line, bytes consumed so far) for each whole line of `path` after `offset`; a last line
    without its newline (torn by a kill) is left out."""
    with open(path, "rb") as f:
        f.seek(offset)
        consumed = offset
        for line in f:
            if not line.endswith(b"\n"):
                break
            consumed += len(line)
            yield line, consumed


class _Plan:
    """Which shards to merge (from which byte) and which to leave to their live writers."""

    def __init__(self, files: list[Path], merged: dict[str, int], live=live_writer):
        self.merge: list[tuple[Path, int]] = []  # (shard, bytes of it already merged)
        self.live: list[str] = []
        self.live_paths: list[Path] = []
        self.manifest: dict[str, int] = {}  # shard name -> bytes merged, for the shards that exist
        for path in files:
            if path.name in merged:
                self.manifest[path.name] = merged[path.name]
            who = live(path)
            if who:
                self.live.append(who)
                self.live_paths.append(path)
            else:
                self.merge.append((path, merged.get(path.name, 0)))
        self.sizes: dict[Path, int] = {}  # what each merged file held when read: deleted if it still does


def compact_cache(path, live=live_writer, notes: list | None = None) -> dict:
    """Merge the finished shards, the old compacted store and a pre-shard file into a new
    compacted store. Returns counts: replies, shards merged, kept (live writers, or grown);
    `notes` gets a line per shard left to its live writer."""
    directory, legacy = llm_cache.locations(path)
    with exclusive(directory):
        final = directory / llm_cache.COMPACTED
        old = llm_cache.open_sqlite(final) if final.is_file() else None
        merged = {}
        if old is not None and old.execute("SELECT 1 FROM sqlite_master WHERE name = 'merged'").fetchone():
            merged = dict(old.execute("SELECT shard, bytes FROM merged"))
        plan = _Plan(shards.files(directory / llm_cache.SHARDS, llm_cache.DATA), merged, live)
        if notes is not None:
            notes += plan.live
        legacy_name = f"legacy:{legacy.name}"
        fresh_legacy = legacy.is_file() and merged.get(legacy_name) != legacy.stat().st_size
        if not plan.merge and not legacy.is_file():
            if old is not None:
                old.close()
            return {"replies": len(llm_cache.Cache(path)), "shards": 0, "kept": len(plan.live)}
        tmp = directory / f"{llm_cache.COMPACTED}.tmp.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp)
        db.execute("PRAGMA journal_mode=OFF")  # a half-written file is simply not renamed into place
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE replies (key TEXT PRIMARY KEY, request TEXT, response TEXT)")
        db.execute("CREATE TABLE merged (shard TEXT PRIMARY KEY, bytes INTEGER)")
        # a candidate's place in alpacare.llm.cache.order: the old compacted store first (its
        # replies were chosen before any shard that exists now), a pre-shard file next, then
        # each shard line by (time, shard, offset)
        db.execute("CREATE TEMP TABLE candidates (key TEXT, at REAL, shard TEXT, offset INTEGER, request TEXT, "
                   "response TEXT)")
        add = "INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?)"
        if old is not None:
            db.executemany(add, ((k, -2.0, "", 0, q, r) for k, q, r in old.execute("SELECT key, request, response FROM replies")))
            old.close()
        if fresh_legacy:
            source = llm_cache.open_sqlite(legacy)
            db.executemany(add, ((k, -1.0, "", 0, q, r) for k, q, r in source.execute("SELECT key, request, response FROM replies")))
            source.close()
        if legacy.is_file():
            plan.manifest[legacy_name] = legacy.stat().st_size
        for data, offset in plan.merge:
            end = offset
            rows = []
            for line, end in _whole_lines(data, offset):
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(record, dict) and {"key", "request", "response"} <= record.keys():
                    at = llm_cache.order(record | {"shard": data.name, "offset": end - len(line)})
                    rows.append((record["key"], *at, json.dumps(record["request"], ensure_ascii=False),
                                 json.dumps(record["response"], ensure_ascii=False)))
            db.executemany(add, rows)
            plan.manifest[data.name] = end
            plan.sizes[data] = data.stat().st_size
            index = data.with_suffix(llm_cache.INDEX)
            if index.exists():
                plan.sizes[index] = index.stat().st_size
        db.execute("CREATE INDEX temp.by_key ON candidates (key, at, shard, offset)")
        db.execute("INSERT INTO replies SELECT key, request, response FROM candidates AS c WHERE rowid = "
                   "(SELECT rowid FROM candidates WHERE key = c.key ORDER BY at, shard, offset LIMIT 1)")
        # a key whose earliest reply is in a live shard stays with that shard
        for path in plan.live_paths:
            for record in llm_cache.read_shard(path):
                best = db.execute("SELECT at, shard, offset FROM candidates WHERE key = ? ORDER BY at, shard, offset "
                                  "LIMIT 1", (record["key"],)).fetchone()
                if best is not None and best[0] >= 0 and llm_cache.order(record) < tuple(best):
                    db.execute("DELETE FROM replies WHERE key = ?", (record["key"],))
        db.executemany("INSERT INTO merged VALUES (?, ?)", plan.manifest.items())
        db.execute("DROP TABLE temp.candidates")
        db.commit()
        replies = db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
        db.close()
        _fsync_replace(tmp, final)
        # the index before its data: a reader never indexes a record whose reply is gone
        grown = _delete_unchanged(dict(sorted(plan.sizes.items(), key=lambda item: item[0].suffix != llm_cache.INDEX)))
        if legacy.is_file():
            _retire(legacy)
        kept = len(plan.live) + len([p for p in grown if p.suffix == llm_cache.DATA])
        return {"replies": replies, "shards": len(plan.merge), "kept": kept}


def read_manifest(compacted: Path) -> dict[str, int]:
    """The shards (name -> bytes) whose lines the compacted ledger holds."""
    try:
        with open(compacted, "rb") as f:
            first = f.readline()
    except FileNotFoundError:
        return {}
    return json.loads(first[len(LEDGER_MANIFEST):])["merged"] if first.startswith(LEDGER_MANIFEST) else {}


def compact_ledger(path, live=live_writer, notes: list | None = None) -> dict:
    """Merge the finished shards, the old compacted file and a pre-shard file, each line once
    (counts and `notes` as compact_cache)."""
    directory, legacy = ledger.locations(path)
    with exclusive(directory):
        final = directory / ledger.COMPACTED
        merged = read_manifest(final)
        plan = _Plan([p for p in shards.files(directory, ledger.SHARD_SUFFIX) if p.name != ledger.COMPACTED],
                     merged, live)
        if notes is not None:
            notes += plan.live
        legacy_name = f"legacy:{legacy.name}"
        if not plan.merge and not legacy.is_file():
            return {"lines": len(ledger.read(path)), "shards": 0, "kept": len(plan.live)}
        sources = [(final, 0)] if final.is_file() else []
        if legacy.is_file():
            if merged.get(legacy_name) != legacy.stat().st_size:
                sources.append((legacy, 0))
            plan.manifest[legacy_name] = legacy.stat().st_size
        tmp = directory / f"{ledger.COMPACTED}.tmp.{os.getpid()}"
        lines = 0
        body = directory / f"{ledger.COMPACTED}.body.{os.getpid()}"
        with open(body, "wb") as out:
            for source, offset in sources + plan.merge:  # whole lines, verbatim; a torn last line is left out
                end = offset
                for line, end in _whole_lines(source, offset):
                    if not line.startswith(LEDGER_MANIFEST):
                        out.write(line)
                        lines += 1
                if (source, offset) in plan.merge:
                    plan.manifest[source.name] = end
                    plan.sizes[source] = source.stat().st_size
        with open(tmp, "wb") as out, open(body, "rb") as f:  # the manifest first, in the same file
            out.write(LEDGER_MANIFEST + json.dumps({"merged": plan.manifest}).encode() + b"\n")
            while chunk := f.read(1 << 20):
                out.write(chunk)
        body.unlink()
        _fsync_replace(tmp, final)
        grown = _delete_unchanged(plan.sizes)
        if legacy.is_file():
            _retire(legacy)
        return {"lines": lines, "shards": len(plan.merge), "kept": len(plan.live) + len(grown)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alpacare.compact", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="the run's config files (after config.yaml)")
    parser.add_argument("--directory", default=".", help="the workflow's directory")
    parser.add_argument("--without-squeue", action="store_true",
                        help="do not ask squeue (it fails here); you have checked that no job of this workflow runs")
    args = parser.parse_args(argv)
    root = Path(args.directory)
    configs = ([root / "config.yaml"] if (root / "config.yaml").exists() else []) + [root / c for c in args.configfile]
    where = {k: root / v for k, v in locations_from_config(configs).items()}
    try:
        busy = workflow_jobs(root, squeue_text="" if args.without_squeue else None)
    except FileNotFoundError:
        print("compact: squeue not found, so SLURM jobs are not checked (not a SLURM host?): relying on the "
              "Snakemake lock and on each shard's writer", file=sys.stderr)
        busy = workflow_jobs(root, squeue_text="")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        print(f"compact: squeue failed ({getattr(err, 'stderr', '') or err}): cannot tell whether jobs of this "
              f"workflow still run; nothing was touched (--without-squeue once you have checked)", file=sys.stderr)
        return 1
    if busy:
        print("compact: jobs of this workflow may still write, so nothing was touched; run it once none runs:\n  "
              + "\n  ".join(busy), file=sys.stderr)
        return 1
    live: list[str] = []
    try:
        cache = compact_cache(where["cache"], notes=live)
        book = compact_ledger(where["ledger"], notes=live)
    except CompactionRunning as err:
        print(f"compact: {err}", file=sys.stderr)
        return 1
    for who in live:
        print(f"left for its writer, merged by a later compaction: {who}", file=sys.stderr)
    print(f"cache {where['cache']}: {cache['replies']} replies in {llm_cache.locations(where['cache'])[0] / llm_cache.COMPACTED}"
          f", {cache['shards']} shards merged, {cache['kept']} kept (written still)")
    print(f"ledger {where['ledger']}: {book['lines']} lines in {ledger.locations(where['ledger'])[0] / ledger.COMPACTED}"
          f", {book['shards']} shards merged, {book['kept']} kept (written still)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
