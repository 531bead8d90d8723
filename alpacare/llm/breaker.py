"""When to stop calling an endpoint: counted in failed attempts, never in time.

A working endpoint may be slow, or hold a few requests until the read timeout drops them;
while those hang, other calls go on succeeding. So time without a success says nothing about
an outage, and calls still in flight count for nothing: only attempts that ended do. The
breaker opens on `failures` failed attempts in a row (over all of a job's threads), or when at
least `rate` of the last `window` attempts failed (an endpoint that answers now and then but
mostly fails). A hang counts once it ends in a failure: the read timeout
(`llms.<name>.timeout.read`) bounds how long that takes.
"""

from __future__ import annotations

import collections
import threading


class CircuitBreaker:
    def __init__(self, failures: int = 10, rate: float = 0.5, window: int = 100):
        self.failures, self.rate, self.window = failures, rate, window
        self.streak = 0  # failed attempts since the last success
        self._recent: collections.deque[bool] = collections.deque(maxlen=window)  # True: failed
        self._lock = threading.Lock()

    def record(self, ok: bool) -> str | None:
        """Count an attempt that ended; the reason to open, or None."""
        with self._lock:
            self.streak = 0 if ok else self.streak + 1
            self._recent.append(not ok)
            if self.streak >= self.failures:
                return f"failed {self.streak} attempts in a row"
            failed = sum(self._recent)
            if len(self._recent) == self.window and failed >= self.rate * self.window:
                return f"failed {failed} of its last {self.window} attempts"
            return None

    def settings(self) -> str:
        return f"llm.circuit_breaker: failures {self.failures}, rate {self.rate:g} over a window of {self.window}"
