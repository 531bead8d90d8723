"""A content-addressed store of LLM replies: nothing paid for is ever paid twice, on any node.

`llm.cache` names a directory (default `.cache/llm`; a config naming `.cache/llm.sqlite`, the
pre-shard file, means the same directory and keeps that file readable):

    .cache/llm/compacted.sqlite          every reply merged by `python -m alpacare.compact`;
                                         read-only, replaced whole (rename) by compaction only
    .cache/llm/shards/<name>.jsonl       one per writing job (alpacare.shards): a JSON line
                                         {"key", "request", "response"} per reply, appended as
                                         it arrives, so a kill loses only the calls in flight
    .cache/llm/shards/<name>.idx         the same shard's index: a 44-byte record per reply
                                         (the key's sha256, offset, length in the .jsonl)
    .cache/llm.sqlite                    a pre-shard cache (SQLite), read as it is until
                                         compaction migrates it

A reader loads the shards' indexes (44 bytes a reply: 129k replies are 5.7 MB) and reads a
reply only when it is asked for; the SQLite files are opened read-only without locks or WAL
shared memory (`immutable=1`: nothing writes them in place). Nothing here takes a lock that a
network filesystem cannot give. Two jobs that ask the same new request at the same moment
both pay for it (as before) and both replies are kept; a reader answers with the compacted
store's, else the first its index met, and compaction keeps one (the older shard's).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sqlite3
import struct
import threading
from pathlib import Path

from .. import shards
from .base import Response

COMPACTED = "compacted.sqlite"
SHARDS = "shards"
DATA, INDEX = ".jsonl", ".idx"
RECORD = struct.Struct("<32sQI")  # digest_of(key), offset and length of the reply's line
OPEN_SHARDS = 64  # data files a reader keeps open (others are reopened when asked)


def cache_key(provider: str, identity: dict, request: dict) -> str:
    """sha256 of the canonical JSON of everything that decides the reply (never a secret)."""
    material = {"provider": provider, "identity": identity, "request": request}
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def digest_of(key: str) -> bytes:
    """A key's 32 bytes in the shard indexes (hashed again, so any string can be a key)."""
    return hashlib.sha256(key.encode()).digest()


def locations(path: str | Path) -> tuple[Path, Path]:
    """(cache directory, pre-shard SQLite file) of a configured `llm.cache`."""
    return shards.split_location(path, ".sqlite")


def open_sqlite(path: Path) -> sqlite3.Connection:
    """A read-only connection that needs no lock and no WAL shared memory. `immutable=1` is
    safe where no WAL content is pending (a pre-shard cache whose last writer closed cleanly,
    or a compacted store, which is never written in place); otherwise plain read-only, which a
    pre-shard cache on the local disk it was written on can still serve."""
    wal = Path(f"{path}-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    mode = "mode=ro" if pending else "mode=ro&immutable=1"
    return sqlite3.connect(f"file:{path.resolve()}?{mode}", uri=True, check_same_thread=False)


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
        self._open: collections.OrderedDict[int, int] = collections.OrderedDict()  # shard number -> fd
        self._data: shards.Appender | None = None
        self._data_index: shards.Appender | None = None
        self.refresh()

    # --- reading --------------------------------------------------------------------

    def refresh(self) -> None:
        """Index what the shards gained since the last look (other jobs, other nodes)."""
        with self._lock:
            for index in shards.files(self.directory / SHARDS, INDEX):
                seen = self._indexed.get(index.name, 0)
                data = shards.read_from(index, seen)
                whole = len(data) - len(data) % RECORD.size  # a torn last record waits
                if not whole:
                    continue
                number = self._number(index)
                for digest, offset, length in RECORD.iter_unpack(data[:whole]):
                    self._index.setdefault(digest, (number, offset, length))  # the first writer's reply
                self._indexed[index.name] = seen + whole

    def _number(self, index: Path) -> int:
        if index.name not in self._numbers:
            self._numbers[index.name] = len(self._shards)
            self._shards.append(index.with_suffix(DATA))
        return self._numbers[index.name]

    def get(self, key: str) -> Response | None:
        # the SQLite stores first: what they hold was written before any shard that exists now
        # (compaction keeps the first reply of a key, and so does every reader)
        record = self._from_stores(key)
        if record is None:
            record = self._from_shards(key)
        return Response.from_json(record) if record is not None else None

    def _from_shards(self, key: str) -> dict | None:
        found = self._index.get(digest_of(key))
        if found is None:
            return None
        number, offset, length = found
        for fresh in (False, True):  # a stale handle (NFS) may not see the end yet: reopen once
            line = self._read(number, offset, length, fresh)
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if record.get("key") == key:
                return record["response"]
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
        line = json.dumps({"key": key, "request": request, "response": response.to_json()}, ensure_ascii=False)
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
            self._index.setdefault(digest, (self._numbers[self._data_index.path.name], offset, len(data) - 1))

    # --- whole-cache views (tests, the forecast, the drill) ----------------------------

    def records(self):
        """(key, request, response) of every reply, each key once, the first writer's."""
        seen = set()
        for store in self._stores:
            for key, request, response in store.execute("SELECT key, request, response FROM replies"):
                if key not in seen:
                    seen.add(key)
                    yield key, json.loads(request), json.loads(response)
        for data in shards.files(self.directory / SHARDS, DATA):
            for record in read_shard(data):
                if record["key"] not in seen:
                    seen.add(record["key"])
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
    needed: a reply whose index record a kill lost is still found here)."""
    try:
        f = open(data, "rb")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            if not line.endswith(b"\n"):  # torn by a kill mid-write
                break
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and {"key", "request", "response"} <= record.keys():
                yield record
