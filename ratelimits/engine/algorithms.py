"""The four algorithms of SPEC 3.2 as pure functions over explicit state.

This is the one Python home of the rate-limit math; `check.lua` mirrors it line for line for
Redis. Stores read a limit's state, call the function, and write the returned state only if
every limit of the check admitted (a denied check consumes nothing).

States (all integers, times in ms since the epoch):
- fixed window: ``(window_start_ms, count)``
- token / leaky bucket: ``(level_units, unit, updated_ms)``; the level is in the units of
  `Compiled` (one request = `unit` units, draining `drain` units per ms), and `unit` is kept
  with it so a level survives a change of the policy's window or rate.
- sliding window log: the sorted timestamps of accepted requests; each entry counts while it
  is in (now - W, now] and leaves at exactly its timestamp + W.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from .types import Algorithm, Compiled, Verdict

FixedState = tuple[int, int]
BucketState = tuple[int, int, int]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def window_start(now_ms: int, window_ms: int) -> int:
    """Windows are aligned to multiples of W since the Unix epoch."""
    return now_ms - now_ms % window_ms


def fixed_window(
    c: Compiled, state: FixedState | None, now_ms: int
) -> tuple[Verdict, FixedState, int]:
    """Admit when count in the current window + n <= L. Returns (verdict, new state, ttl ms)."""
    start = window_start(now_ms, c.window_ms)
    end = start + c.window_ms
    count = state[1] if state is not None and state[0] == start else 0
    allowed = count + c.n <= c.limit
    after = count + c.n if allowed else count
    verdict = Verdict(
        allowed=allowed,
        remaining=max(0, c.limit - after),
        reset_ms=end,
        retry_ms=0 if allowed else end - now_ms,
        delay_ms=0,
    )
    return verdict, (start, after), end - now_ms


def bucket(c: Compiled, state: BucketState | None, now_ms: int) -> tuple[Verdict, BucketState, int]:
    """Token and leaky bucket: admit when level + n <= L + B; the level drains continuously.

    The token bucket's level is tokens used (it starts empty, i.e. a full bucket of tokens);
    the leaky bucket's level is requests queued, and an admitted request's `delay_ms` is the
    time until the queue ahead of it has drained (0 for the first request into an empty
    bucket). reset is when the level is 0 again. Returns (verdict, new state, ttl ms).
    """
    level = 0
    if state is not None:
        level, unit, updated = state
        if unit != c.unit:
            level = ceil_div(level * c.unit, unit)
        elapsed = now_ms - updated
        if elapsed > 0:
            level = max(0, level - elapsed * c.drain)
    need = c.n * c.unit
    cap = c.capacity_units
    allowed = level + need <= cap
    after = level + need if allowed else level
    if allowed:
        retry = 0
    elif need > cap:
        # Never admissible at this limit: the earliest moment worth retrying is an empty bucket.
        retry = ceil_div(after, c.drain)
    else:
        retry = ceil_div(level + need - cap, c.drain)
    delay = ceil_div(level, c.drain) if allowed and c.algorithm is Algorithm.LEAKY_BUCKET else 0
    drained_in = ceil_div(after, c.drain)
    verdict = Verdict(
        allowed=allowed,
        remaining=max(0, (cap - after) // c.unit),
        reset_ms=now_ms + drained_in,
        retry_ms=retry,
        delay_ms=delay,
    )
    return verdict, (after, c.unit, now_ms), max(1, drained_in)


def sliding_live_from(timestamps: Sequence[int], now_ms: int, window_ms: int) -> int:
    """Index of the first entry still in the window (entries at or before now - W have left)."""
    return bisect_right(timestamps, now_ms - window_ms)


def sliding_log(c: Compiled, live: Sequence[int], now_ms: int) -> Verdict:
    """Admit when accepted requests in (now - W, now] + n <= L.

    `live` is the sorted list of entries still in the window. When admitted, the store appends
    n entries at now_ms. reset_time: when denied, the moment enough of the oldest entries have
    left for n to fit; when admitted, the moment the oldest entry leaves (one more slot).
    """
    count = len(live)
    allowed = count + c.n <= c.limit
    if allowed:
        oldest = live[0] if count else now_ms
        reset = oldest + c.window_ms
        remaining = c.limit - count - c.n
    else:
        must_leave = count + c.n - c.limit
        if must_leave > count:
            # More than L at once never fits: reset when the log is empty.
            reset = (live[-1] if count else now_ms) + c.window_ms
        else:
            reset = live[must_leave - 1] + c.window_ms
        remaining = max(0, c.limit - count)
    return Verdict(
        allowed=allowed,
        remaining=remaining,
        reset_ms=reset,
        retry_ms=0 if allowed else reset - now_ms,
        delay_ms=0,
    )
