"""When to stop calling an endpoint: counted in failed attempts, never in time.

A working endpoint may be slow, or hold a few requests until the read timeout drops them;
while those hang, other calls go on succeeding. So time without a success says nothing about
an outage, and calls still in flight count for nothing: only attempts that ended do. The
breaker opens on `failures` failed attempts in a row (over all of a job's threads), or when at
least `rate` of the last `window` attempts failed (an endpoint that answers now and then but
mostly fails). A hang counts once it ends in a failure: the read timeout
(`llms.<name>.timeout.read`) bounds how long that takes. Only the endpoint's failures count: a
request it refuses itself (RequestRejected: 400, a 404 naming a model, 413, 422, a content
filter) fails its item and is never recorded here, and a refused key (401/403) stops the stage
without it.

One blip (a dropped connection pool, a load balancer's restart) fails every call in flight at
that moment; those failures are one event, not `max_concurrency` pieces of evidence. So the
failures in a row count only attempts that started after the first of them ended, and the rate
is taken over at least 4 x max_concurrency attempts (one blip is then at most a quarter of
them). A full outage stops after `failures` such attempts, plus the calls in flight twice over
(when it began and when the breaker opened).
"""

from __future__ import annotations

import collections
import threading
import time


class CircuitBreaker:
    def __init__(self, failures: int = 10, rate: float = 0.5, window: int = 100, concurrency: int = 1):
        self.failures, self.rate = failures, rate
        self.window = max(window, 4 * concurrency)
        self.streak = 0  # failed attempts since the last success, the calls in flight with the first counted once
        self._began: float | None = None  # when the first failure of the streak ended
        self._recent: collections.deque[bool] = collections.deque(maxlen=self.window)  # True: failed
        self._lock = threading.Lock()

    def record(self, ok: bool, started: float) -> str | None:
        """Count an attempt that ended (`started`: its time.monotonic() when it was sent); the
        reason to open, or None."""
        with self._lock:
            self._recent.append(not ok)
            if ok:
                self.streak, self._began = 0, None
            elif self._began is None:
                self.streak, self._began = 1, time.monotonic()
            elif started >= self._began:  # sent after the streak began: new evidence
                self.streak += 1
            if self.streak >= self.failures:
                return f"failed {self.streak} attempts in a row"
            failed = sum(self._recent)
            if len(self._recent) == self.window and failed >= self.rate * self.window:
                return f"failed {failed} of its last {self.window} attempts"
            return None

    def settings(self) -> str:
        return (f"llm.circuit_breaker: failures {self.failures} in a row, or rate {self.rate:g} over the last "
                f"{self.window} attempts")
