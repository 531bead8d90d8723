"""One running job per output, across controllers.

Snakemake's local jobs outlive a controller killed with `kill -9` (they are its grandchildren,
reparented to init), and the documented recovery (`snakemake --unlock`, then the same command)
knows nothing of them: it would start a second copy of each job that was running, and two
copies of an API job both pay for everything not yet cached. So every job holds a lock on its
outputs for as long as its process lives (`.snakemake/alpacare-running/<digest>.lock`, a POSIX
lock, which the kernel drops when the process ends however it ends, and which NFSv4, or NFSv3
with lockd, gives across hosts). A job that finds the lock taken logs who holds it (host, pid,
start, rule) and waits for that job to end; it then runs on what the other left in the cache.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import socket
import time
from pathlib import Path

log = logging.getLogger("alpacare.joblock")

DIRECTORY = Path(".snakemake") / "alpacare-running"
_held: list[int] = []  # the lock's descriptor, open for the life of the process


def lock_path(outputs, directory: Path = DIRECTORY) -> Path:
    names = "\n".join(sorted(os.path.abspath(str(o)) for o in outputs))
    return directory / (hashlib.sha256(names.encode()).hexdigest()[:32] + ".lock")


def hold(outputs, rule: str = "", directory: Path = DIRECTORY, wait: bool = True) -> Path | None:
    """Lock this job's `outputs` until the process exits; if another job holds them, log it and
    wait for it to end (or, wait=False, raise naming it). Returns the lock file (None: no outputs)."""
    outputs = [str(o) for o in outputs]
    if not outputs:
        return None
    path = lock_path(outputs, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EAGAIN):  # e.g. ENOLCK: an NFS mount without locking
            os.close(fd)
            log.warning("cannot lock %s (%s): a job of the same outputs left running by a killed Snakemake "
                        "would not be noticed", path, err)
            return None
        holder = os.pread(fd, 1000, 0).decode(errors="replace").strip() or "another process"
        message = (f"a job writing the same output ({outputs[0]}) still runs: {holder}. Its controller was "
                   f"probably killed; ")
        if not wait:
            os.close(fd)
            raise RuntimeError(message + "wait for it to end, or stop it (kill its pid on its host), then rerun")
        log.warning("%s", message + "waiting for it to end (stop it with kill on its host to go on now)")
        fcntl.lockf(fd, fcntl.LOCK_EX)  # blocks until the holder's process ends
        log.info("the earlier job of %s ended; going on with what it cached", outputs[0])
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    os.pwrite(fd, f"rule {rule or '?'}, pid {os.getpid()} on host {socket.gethostname()}, started {started}\n".encode(), 0)
    _held.append(fd)
    return path
