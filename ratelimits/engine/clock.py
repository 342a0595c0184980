"""The in-process clock: monotonic, anchored to wall time once.

Fixed windows are aligned to the Unix epoch, so the clock must read roughly like wall time; it
must also never step backwards (an NTP correction must not un-age a sliding log). Reading
`time.monotonic_ns()` plus an offset taken once gives both.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]
"""A function returning the current time in integer milliseconds since the epoch."""


class MonotonicClock:
    def __init__(self) -> None:
        self._offset_ns = time.time_ns() - time.monotonic_ns()

    def __call__(self) -> int:
        return (time.monotonic_ns() + self._offset_ns) // 1_000_000


class ManualClock:
    """A clock that moves only when told to: for tests and replays."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, *, ms: int = 0, seconds: float = 0) -> int:
        self.now_ms += ms + round(seconds * 1000)
        return self.now_ms

    def set(self, now_ms: int) -> None:
        self.now_ms = now_ms
