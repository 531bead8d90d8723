"""One running job per output: a second job of the same outputs waits for the first (or stops
naming its pid and host), and the lock goes when the first job's process ends, however it ends."""

import multiprocessing
import os
import signal
import socket

import pytest

from alpacare import joblock

SPAWN = multiprocessing.get_context("spawn")


def _hold_forever(directory, held):
    joblock.hold(["results/a.json", "results/b.json"], "generate_api", directory=directory)
    held.set()
    signal.pause()


def test_a_second_job_of_the_same_outputs_names_the_first_and_goes_on_once_it_is_killed(tmp_path):
    held = SPAWN.Event()
    first = SPAWN.Process(target=_hold_forever, args=(tmp_path, held))
    first.start()
    try:
        assert held.wait(120)
        with pytest.raises(RuntimeError, match=f"rule generate_api, pid {first.pid} on host {socket.gethostname()}"):
            joblock.hold(["results/b.json", "results/a.json"], "generate_api", directory=tmp_path, wait=False)
        assert joblock.hold(["results/other.json"], "x", directory=tmp_path, wait=False)  # other outputs: free
    finally:
        os.kill(first.pid, signal.SIGKILL)  # killed, as an orphan would be: the lock goes with it
        first.join(60)
    path = joblock.hold(["results/a.json", "results/b.json"], "generate_api", directory=tmp_path, wait=False)
    assert f"pid {os.getpid()}" in path.read_text()


def test_a_filesystem_without_locks_is_said_and_the_job_goes_on(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    assert joblock.hold(["results/a.json"], "x", directory=tmp_path) is None
    assert "cannot lock" in caplog.text and "No locks available" in caplog.text
