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
        self._local = threading.local()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, request TEXT, response TEXT)")

    def _connect(self) -> sqlite3.Connection:
        # one connection per thread: sqlite3 connections must not cross threads
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60)
            # WAL + NORMAL: a commit survives the process being killed (it is in the OS's
            # hands), only a power cut may lose the last few; FULL would fsync every reply
            # (~9 ms each, serialized), which capped a job near 110 calls/s
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def get(self, key: str) -> Response | None:
        row = self._connect().execute("SELECT response FROM replies WHERE key = ?", (key,)).fetchone()
        return Response.from_json(json.loads(row[0])) if row else None

    def put(self, key: str, request: dict, response: Response) -> None:
        db = self._connect()
        with db:
            db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?)",
                (key, json.dumps(request, ensure_ascii=False), json.dumps(response.to_json(), ensure_ascii=False)),
            )

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM replies").fetchone()[0]
