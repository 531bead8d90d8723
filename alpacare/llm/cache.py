"""A content-addressed store of LLM replies: nothing paid for is ever paid twice, on any node.

`llm.cache` names a directory (default `.cache/llm`; a config naming `.cache/llm.sqlite`, the
pre-shard file, means the same directory and keeps that file readable):

    .cache/llm/compacted.sqlite          every reply merged by `python -m alpacare.compact`;
                                         read-only, replaced whole (rename) by compaction only
    .cache/llm/shards/<name>.jsonl       one per writing job (alpacare.shards): a JSON line
                                         {"key", "request", "response", "time"} per reply,
                                         appended as it arrives, so a kill loses only the
                                         calls in flight
    .cache/llm/shards/<name>.idx         the same shard's index: a 44-byte record per reply
                                         (the key's sha256, offset, length in the .jsonl)
    .cache/llm.sqlite                    a pre-shard cache (SQLite), read as it is until
                                         compaction migrates it

A reader loads the shards' indexes (44 bytes a reply: 129k replies are 5.7 MB) and reads a
reply only when it is asked for; the SQLite files are opened read-only without locks or WAL
shared memory (`immutable=1`: nothing writes them in place). Nothing here takes a lock that a
network filesystem cannot give. A running job looks again before each request (`refresh(every=
...)`: at most every 0.1 s a size check of each index it knows, only appended bytes read; a
listing for new shards every LIST_SECONDS), so it takes the replies other jobs paid for
meanwhile instead of paying again (on NFS, a size another host changed shows within the
client's attribute cache time, a few seconds).

One reply per request, everywhere: two jobs that asked the same request at the same moment
both paid and both replies are kept, and every reader, compaction and the replay bundle answer
with the one `choose` picks: the compacted store's, else the earliest written, by (the time the
line records, shard name, offset). A client whose own reply lost to an earlier one takes the
earlier one before it returns (LLM.run), so its outputs agree with what every reader serves.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
import time
from pathlib import Path

from .. import shards
from .base import Response

COMPACTED = "compacted.sqlite"
SHARDS = "shards"
DATA, INDEX = ".jsonl", ".idx"
RECORD = struct.Struct("<32sQI")  # digest_of(key), offset and length of the reply's line
OPEN_SHARDS = 64  # data files a reader keeps open (others are reopened when asked)
LIST_SECONDS = 1.0  # a running job lists the shard directory (new shards) at most this often


def cache_key(provider: str, identity: dict, request: dict) -> str:
    """sha256 of the canonical JSON of everything that decides the reply (never a secret): the
    provider's identity (Provider.identity) and the request, its numbers compared by value
    (`temperature: 1` and `1.0` are one key). Unchanged where legacy_cache_key already agreed
    (float sampling settings, the identities that did not change), so most keys kept theirs."""
    return _sha256_of({"provider": provider, "identity": identity, "request": canonical_request(request)})


def legacy_cache_key(provider: str, identity: dict, request: dict) -> str:
    """The key before canonical keys (the request as given, Provider.legacy_identity): a reply
    stored under it, in a cache or in a replay bundle made before, still answers (LLM.run)."""
    return _sha256_of({"provider": provider, "identity": identity, "request": request})


FLOAT_FIELDS = ("temperature", "top_p", "presence_penalty")  # Request's float settings
INT_FIELDS = ("max_tokens", "seed")


def canonical_request(request: dict) -> dict:
    """The request with each number in its field's own type: 1 and 1.0 compare by value."""
    out = dict(request)
    for name in FLOAT_FIELDS:
        if type(out.get(name)) is int:
            out[name] = float(out[name])
    for name in INT_FIELDS:
        if type(out.get(name)) is float and out[name].is_integer():
            out[name] = int(out[name])
    return out


def _sha256_of(material: dict) -> str:
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def shard_time(name: str) -> float:
    """The UTC time a shard's name begins with (alpacare.shards.shard_name), as epoch seconds."""
    try:
        stamp = datetime.datetime.strptime(name[:15], "%Y%m%dT%H%M%S")
    except ValueError:
        return 0.0
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()


def order(reply: dict) -> tuple:
    """When a reply was written: (its line's `time`, else its shard's start, shard name, offset)."""
    return (reply.get("time") or shard_time(reply["shard"]), reply["shard"], reply["offset"])


def choose(replies):
    """THE reply of a key that several shards hold (two jobs paid for it at once): the earliest
    written (`order`). Every reader, compaction and the bundle keep this one. `replies`: shard
    records as read_shard yields them ({"key", "request", "response", "time", "shard", "offset"})."""
    return min(replies, key=order)


def chosen_records(data_files):
    """The chosen record (choose) of every key in these shard data files, each key once: two
    streaming passes (the first keeps only each key's order), so memory holds no replies."""
    best: dict[str, tuple] = {}
    for data in data_files:
        for record in read_shard(data):
            at = order(record)
            if record["key"] not in best or at < best[record["key"]]:
                best[record["key"]] = at
    for data in data_files:
        for record in read_shard(data):
            if best.get(record["key"]) == order(record):
                yield record


def digest_of(key: str) -> bytes:
    """A key's 32 bytes in the shard indexes (hashed again, so any string can be a key)."""
    return hashlib.sha256(key.encode()).digest()


def locations(path: str | Path) -> tuple[Path, Path]:
    """(cache directory, pre-shard SQLite file) of a configured `llm.cache`."""
    return shards.split_location(path, ".sqlite")


def open_sqlite(path: Path) -> sqlite3.Connection:
    """A read-only connection that needs no lock and writes nothing beside the file
    (`immutable=1`): right for a compacted store (never written in place) and for a pre-shard
    cache whose last writer closed cleanly. One whose writer died with content still in its
    WAL is read from a private copy instead: any reader of a WAL database writes the
    shared-memory index (`-shm`) beside it, on a filesystem other jobs share."""
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        private = Path(tempfile.mkdtemp(prefix="alpacare-llm-"))
        try:
            copy = private / path.name
            shutil.copyfile(path, copy)
            shutil.copyfile(wal, f"{copy}-wal")
            merge = sqlite3.connect(copy)
            merge.execute("PRAGMA journal_mode=DELETE")  # the WAL merged into the copy
            merge.close()
            db = sqlite3.connect(f"file:{copy}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opened now: the copy may go
            return db
        finally:
            shutil.rmtree(private, ignore_errors=True)
    return sqlite3.connect(f"file:{path.resolve()}?mode=ro&immutable=1", uri=True, check_same_thread=False)


class Cache:
    def __init__(self, path: str | Path, label: str = "cache"):
        """label: names the shards this process writes (the rule)."""
        self.directory, self.legacy = locations(path)
        self.label = label
        self._lock = threading.Lock()
        self._stores = [open_sqlite(p) for p in (self.directory / COMPACTED, self.legacy) if p.is_file()]
        self._shards: list[Path] = []  # data files, by number
        self._numbers: dict[str, int] = {}  # index file name -> shard number
        self._indexed: dict[str, int] = {}  # index file name -> bytes of whole records read
        self._index: dict[bytes, tuple[int, int, int]] = {}  # digest -> (shard number, offset, length)
        self._others: dict[bytes, list[tuple[int, int, int]]] = {}  # a key's further replies (two jobs paid)
        self._refresh_lock = threading.Lock()
        self._refreshed = self._listed = float("-inf")  # monotonic times of the last look and listing
        self._known: list[Path] = []  # the index files the last listing found
        self._open: collections.OrderedDict[int, int] = collections.OrderedDict()  # shard number -> fd
        self._data: shards.Appender | None = None
        self._data_index: shards.Appender | None = None
        self.last_put = 0.0  # epoch seconds this process's last reply was stamped with
        self.refresh()

    # --- reading --------------------------------------------------------------------

    def refresh(self, every: float = 0.0) -> None:
        """Index what the shards gained since the last look (other jobs, other nodes). With
        `every`, at most that often and never waiting for another thread that is looking: an
        index whose size did not change is not opened, and the directory (new shards) is
        listed at most every LIST_SECONDS, so a running job may call it before every request."""
        now = time.monotonic()
        if every and now - self._refreshed < every:
            return
        if not self._refresh_lock.acquire(blocking=not every):
            return
        try:
            self._refreshed = now
            if not every or now - self._listed >= LIST_SECONDS:
                self._known = shards.files(self.directory / SHARDS, INDEX)
                self._listed = now
            for index in self._known:
                seen = self._indexed.get(index.name, 0)
                try:  # a look every 0.1 s checks sizes; a whole look reads (an open revalidates on NFS)
                    if every and index.stat().st_size - seen < RECORD.size:
                        continue
                except FileNotFoundError:
                    continue
                data = shards.read_from(index, seen)
                whole = len(data) - len(data) % RECORD.size  # a torn last record waits
                if not whole:
                    continue
                with self._lock:
                    if self._indexed.get(index.name, 0) != seen:  # our own shard, written meanwhile
                        continue
                    number = self._number(index)
                    for digest, offset, length in RECORD.iter_unpack(data[:whole]):
                        self._add(digest, (number, offset, length))
                    self._indexed[index.name] = seen + whole
        finally:
            self._refresh_lock.release()

    def _add(self, digest: bytes, entry: tuple[int, int, int]) -> None:
        first = self._index.setdefault(digest, entry)
        if first != entry and entry not in self._others.get(digest, ()):
            self._others.setdefault(digest, []).append(entry)

    def _number(self, index: Path) -> int:
        if index.name not in self._numbers:
            self._numbers[index.name] = len(self._shards)
            self._shards.append(index.with_suffix(DATA))
        return self._numbers[index.name]

    def get(self, key: str) -> Response | None:
        # the SQLite stores first: what they hold was written before any shard that exists now
        # (compaction keeps the chosen reply of a key, and so does every reader)
        record = self._from_stores(key)
        if record is None:
            record = self._from_shards(key)
        return Response.from_json(record) if record is not None else None

    def others_writing(self, since: float) -> bool:
        """Whether a shard other than this process's own was written since `since` (epoch
        seconds): another job is writing, maybe the same requests."""
        own = self._data_index.path.name if self._data_index is not None else None
        for index in shards.files(self.directory / SHARDS, INDEX):
            try:
                if index.name != own and index.stat().st_mtime >= since:
                    return True
            except FileNotFoundError:
                continue
        return False

    def has_others(self, key: str) -> bool:
        """Whether the shards hold more than one reply for `key` (two jobs paid for it)."""
        return digest_of(key) in self._others

    def _from_shards(self, key: str) -> dict | None:
        digest = digest_of(key)
        with self._lock:
            found = self._index.get(digest)
            entries = [found] + self._others.get(digest, []) if found is not None else []
        records = [r for r in (self._record(key, *entry) for entry in entries) if r is not None]
        return choose(records)["response"] if records else None

    def _record(self, key: str, number: int, offset: int, length: int) -> dict | None:
        for fresh in (False, True):  # a stale handle (NFS) may not see the end yet: reopen once
            line = self._read(number, offset, length, fresh)
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and record.get("key") == key:
                return record | {"shard": self._shards[number].name, "offset": offset}
        return None  # the index ran ahead of the data it points to: treated as a miss

    def _read(self, number: int, offset: int, length: int, fresh: bool) -> bytes:
        with self._lock:
            fd = self._open.pop(number, None)
            if fd is not None and fresh:
                os.close(fd)
                fd = None
            if fd is None:
                try:
                    fd = os.open(self._shards[number], os.O_RDONLY)
                except FileNotFoundError:
                    return b""
                while len(self._open) >= OPEN_SHARDS:
                    os.close(self._open.popitem(last=False)[1])
            self._open[number] = fd
            return os.pread(fd, length, offset)

    def _from_stores(self, key: str) -> dict | None:
        with self._lock:
            for store in self._stores:
                row = store.execute("SELECT response FROM replies WHERE key = ?", (key,)).fetchone()
                if row:
                    return json.loads(row[0])
        return None

    # --- writing --------------------------------------------------------------------

    def put(self, key: str, request: dict, response: Response) -> None:
        """Append the reply to this process's shard; a failed write raises
        shards.ShardWriteError (an OSError naming the file)."""
        self.last_put = time.time()
        record = {"key": key, "request": request, "response": response.to_json(), "time": round(self.last_put, 6)}
        line = json.dumps(record, ensure_ascii=False)
        data = (line + "\n").encode()
        digest = digest_of(key)
        with self._lock:
            if self._data is None:  # this process's shard, at its first reply
                name = shards.shard_name(self.label)
                self._data = shards.Appender(self.directory / SHARDS / (name + DATA))
                self._data_index = shards.Appender(self.directory / SHARDS / (name + INDEX))
                self._number(self._data_index.path)
                self._indexed[self._data_index.path.name] = 0
            offset = self._data.write(data)
            # the reply before its index record: a kill between the two leaves a reply that
            # compaction still finds, never an index record pointing at nothing
            self._data_index.write(RECORD.pack(digest, offset, len(data) - 1))
            self._indexed[self._data_index.path.name] += RECORD.size
            self._add(digest, (self._numbers[self._data_index.path.name], offset, len(data) - 1))

    # --- whole-cache views (tests, the forecast, the drill) ----------------------------

    def records(self):
        """(key, request, response) of every reply, each key once, the chosen one (choose)."""
        seen = set()
        for store in self._stores:
            for key, request, response in store.execute("SELECT key, request, response FROM replies"):
                if key not in seen:
                    seen.add(key)
                    yield key, json.loads(request), json.loads(response)
        for record in chosen_records(shards.files(self.directory / SHARDS, DATA)):
            if record["key"] not in seen:
                yield record["key"], record["request"], record["response"]

    def __bool__(self) -> bool:
        return True  # an open cache, even an empty one; never a count of every reply (__len__)

    def __len__(self) -> int:
        digests = set(self._index)
        with self._lock:
            for store in self._stores:
                digests.update(digest_of(key) for (key,) in store.execute("SELECT key FROM replies"))
        return len(digests)

    def close(self) -> None:
        with self._lock:
            for appender in (self._data, self._data_index):
                if appender is not None:
                    appender.close()
            for fd in self._open.values():
                os.close(fd)
            self._open.clear()
            for store in self._stores:
                store.close()


def read_shard(data: Path):
    """Every whole, well-formed reply line of a shard's data file, streamed (its index not
    needed: a reply whose index record a kill lost is still found here), each with the
    `shard` (file name) and `offset` that `choose` orders by."""
    try:
        f = open(data, "rb")
    except FileNotFoundError:
        return
    offset = 0
    with f:
        for line in f:
            at, offset = offset, offset + len(line)
            if not line.endswith(b"\n"):  # torn by a kill mid-write
                break
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and {"key", "request", "response"} <= record.keys():
                yield record | {"shard": data.name, "offset": at}
