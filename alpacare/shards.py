"""Append-only shard files, one writer each: state that jobs on many hosts share through a
network filesystem (the LLM cache, the ledger).

NFS, Lustre and GPFS give no shared memory between hosts (SQLite's WAL needs it) and no atomic
O_APPEND, so no two processes ever write one file here: each writer creates its own shard
(`<UTC time>.<label>.<host>.<pid>.<random>`, created with O_EXCL), appends whole records with
one write() each (a killed process loses only what it had not written yet; a node that dies
loses at most SYNC_SECONDS: a timer fsyncs what a quiet stretch left unsynced), and readers merge
every shard they see, skipping a last record that a kill tore. Readers take no lock.

A write that fails (disk full, quota, a stale NFS handle) raises ShardWriteError naming the
file; the torn bytes it may have left are cut off, so a later write still starts a whole record.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import secrets
import socket
import struct
import threading
import time
from pathlib import Path

# seconds between fsyncs of a shard: a write() survives the process being killed; a fsync is
# what survives the node (and what shows the data to readers on other NFS clients)
SYNC_SECONDS = 1.0


def shard_name(label: str) -> str:
    """A name no other writer uses: UTC time first (so names sort in the order shards began),
    then what wrote it (a rule name), the node (SLURM's name for it inside a job, else the
    host's) and the process, and a random tail."""
    def clean(text):
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)

    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}.{clean(label or 'shard')}.{clean(node)}.{os.getpid()}.{secrets.token_hex(3)}"


class ShardWriteError(OSError):
    """A shard could not be written: OSError(errno, strerror, the shard's path)."""


def _hold_lock(fd: int) -> None:
    """A write lock on the shard for as long as this process keeps it open, so compaction
    (alpacare.compact.live_writer) leaves it to its writer, on any host that shares the locks.
    An open-file-description lock: a POSIX lock would be dropped when this process closes any
    other descriptor of the file (Cache reads its own shard through one)."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    except OSError:
        pass  # no locks on this filesystem (ENOLCK): compaction falls back to the writer's pid and host


class Appender:
    """One shard file, written by this process alone (its threads take turns)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: a name collision fails loudly instead of two writers sharing a file
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as err:
            raise ShardWriteError(err.errno, err.strerror, str(self.path)) from err
        _hold_lock(self._fd)
        self.size = 0
        self._synced = time.monotonic()
        self._dirty = False  # written since the last fsync
        self._timer: threading.Timer | None = None
        self._error: OSError | None = None  # a failed fsync of the timer, raised by the next write
        self._lock = threading.Lock()

    def write(self, data: bytes) -> int:
        """Append `data` (whole records); returns the offset it starts at."""
        with self._lock:
            if self._error is not None:
                raise self._failed(self._error)
            offset = self.size
            view = memoryview(data)
            try:
                while view:  # a short write (e.g. a signal) writes the rest; a full disk raises
                    view = view[os.write(self._fd, view):]
            except OSError as err:
                try:  # part of a record would glue onto the next one: cut it off
                    os.ftruncate(self._fd, offset)
                except OSError:
                    self._error = err  # the file's end is unknown: no more writes to it
                raise self._failed(err) from err
            self.size += len(data)
            self._dirty = True
            if time.monotonic() - self._synced >= SYNC_SECONDS:
                self._sync_locked()
            elif self._timer is None:  # a quiet stretch after this write still gets its fsync
                self._timer = threading.Timer(SYNC_SECONDS, self._sync_later)
                self._timer.daemon = True
                self._timer.start()
            return offset

    def _failed(self, err: OSError) -> ShardWriteError:
        return ShardWriteError(err.errno, err.strerror or str(err), str(self.path))

    def _sync_locked(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as err:  # NFS reports a full disk or lost handle at fsync
            self._error = err
            raise self._failed(err) from err
        self._synced = time.monotonic()
        self._dirty = False

    def _sync_later(self) -> None:
        with self._lock:
            self._timer = None
            if self._fd >= 0 and self._dirty and self._error is None:
                try:
                    self._sync_locked()
                except ShardWriteError:
                    pass  # kept in self._error: the next write or close raises it

    def __del__(self) -> None:
        # dropped without close(): the descriptor, and with it the writer's lock, goes too
        if getattr(self, "_fd", -1) >= 0:
            try:
                self.close()
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._fd >= 0:
                try:
                    if self._error is None:  # one already raised by a write is not raised again
                        self._sync_locked()
                finally:
                    os.close(self._fd)
                    self._fd = -1


def complete_lines(data: bytes) -> tuple[list[bytes], int]:
    """The newline-terminated lines of `data` and how many bytes they span; a last line
    without its newline (a write torn by a kill, or one still being written) is left out."""
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end


def files(directory: str | Path, suffix: str) -> list[Path]:
    """The shards in `directory` with this suffix, in name order (the order they began)."""
    try:
        return sorted(p for p in Path(directory).iterdir() if p.name.endswith(suffix))
    except FileNotFoundError:
        return []


def read_from(path: Path, offset: int) -> bytes:
    """What `path` holds from `offset` on (opened afresh: on NFS an open revalidates what the
    client cached, so another host's appends are seen)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def split_location(path: str | Path, legacy_suffix: str) -> tuple[Path, Path]:
    """(shard directory, the single legacy file) of a configured location: `.cache/llm` and
    `.cache/llm.sqlite` both mean the directory `.cache/llm/` beside the pre-shard file
    `.cache/llm.sqlite`, so configs that name the old file keep working and find its contents."""
    path = Path(path)
    directory = path.with_suffix("") if path.suffix == legacy_suffix else path
    return directory, directory.with_name(directory.name + legacy_suffix)
