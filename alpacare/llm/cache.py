"""A content-addressed store of LLM replies: nothing paid for is ever paid twice.

SQLite in WAL mode: every reply is committed as soon as it arrives (a kill loses at most
the calls in flight; synchronous=NORMAL, so only a power cut could lose more) and concurrent Snakemake jobs can read and write the same file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from .base import Response


def cache_key(provider: str, identity: dict, request: dict) -> str:
    """sha256 of the canonical JSON of everything that decides the reply (never a secret)."""
    material = {"provider": provider, "identity": identity, "request": request}
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class Cache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per process, its use serialized by a lock: a job's threads then take
        # turns without SQLite's busy handler, which sleeps 1-100 ms on every collision of
        # per-thread connections (a job's throughput fell with it). Other processes (other
        # jobs) still wait on SQLite's own file lock, up to the timeout.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        with self._lock, self._db as db:
            db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives the process being killed (it is in the OS's
            # hands), only a power cut may lose the last few; FULL would fsync every reply
            # (~9 ms each, serialized), which capped a job near 110 calls/s
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, request TEXT, response TEXT)")

    def get(self, key: str) -> Response | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM replies WHERE key = ?", (key,)).fetchone()
        return Response.from_json(json.loads(row[0])) if row else None

    def put(self, key: str, request: dict, response: Response) -> None:
        values = (key, json.dumps(request, ensure_ascii=False), json.dumps(response.to_json(), ensure_ascii=False))
        with self._lock, self._db as db:
            db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?)", values)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
