"""A small circuit breaker, so that a dead or blackholed store costs ~nothing per request.

closed: calls go through; `failure_threshold` consecutive failures open it.
open: calls are refused at once for `reset_timeout` seconds.
half-open: one caller at a time probes; success closes, failure re-opens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        reset_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._state = self.CLOSED
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.reset_timeout:
                return self.HALF_OPEN
            return self._state

    def allow(self) -> bool:
        # The closed state is read without the lock: it is the hot path, and a stale read
        # only lets one more call through.
        if self._state == self.CLOSED:
            return True
        with self._lock:
            if self._state == self.CLOSED:
                return True
            if self._state == self.OPEN:
                if self._clock() - self._opened_at < self.reset_timeout:
                    return False
                self._state = self.HALF_OPEN
            if self._probing:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        if self._state == self.CLOSED and self._failures == 0:
            return
        with self._lock:
            self._failures = 0
            self._state = self.CLOSED
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._state == self.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = self.OPEN
                self._opened_at = self._clock()
