"""The one injectable clock. Services and jobs take "now" from here, never from datetime.now().

time-machine moves it in tests; `override` pins it for code that must not depend on a patch.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from django.utils import timezone

_clock: Callable[[], datetime] = timezone.now


def now() -> datetime:
    return _clock()


@contextmanager
def override(fn: Callable[[], datetime]) -> Iterator[None]:
    global _clock
    previous = _clock
    _clock = fn
    try:
        yield
    finally:
        _clock = previous
