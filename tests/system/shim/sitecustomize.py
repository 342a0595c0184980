"""Loaded by every process of the stack under test (PYTHONPATH points here), never in
production: when SYSTEM_CLOCK_OFFSET_FILE is set, the platform clock reads "now" as the real
time plus the number of seconds written in that file, so a test can move the whole stack a day
ahead (beat stopped for a simulated day) without touching the code under test.

It pins the clock through `budgeting_site.platform.clock.override`, the documented injection
point; code that bypasses the platform clock is not moved (and a test will show it).
"""

import os

_path = os.environ.get("SYSTEM_CLOCK_OFFSET_FILE")
if _path:
    from datetime import timedelta

    from django.utils import timezone

    from budgeting_site.platform import clock

    _cache = {"mtime": None, "offset": 0.0}

    def _offset() -> float:
        try:
            mtime = os.stat(_path).st_mtime_ns
        except OSError:
            return 0.0
        if mtime != _cache["mtime"]:
            try:
                with open(_path) as fh:
                    _cache["offset"] = float(fh.read().strip() or 0)
            except (OSError, ValueError):
                _cache["offset"] = 0.0
            _cache["mtime"] = mtime
        return _cache["offset"]

    def _shifted():
        return timezone.now() + timedelta(seconds=_offset())

    # Keep the context manager alive: if it were collected, its `finally` would restore the
    # real clock at once.
    _pinned = clock.override(_shifted)
    _pinned.__enter__()
