"""Background request loops for fault tests: bounded in count and time, stopped by the test."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Sample:
    name: str
    started: float
    latency: float
    status: int  # 0: the request itself failed (transport error)
    body: Any
    error: str = ""


@dataclass
class Traffic:
    """Runs each request maker in its own thread, back to back, until `stop()`."""

    client_factory: Callable[[], httpx.Client]
    makers: dict[str, Callable[[httpx.Client], httpx.Response]]
    max_requests: int = 20000
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Traffic:
        for name, make in self.makers.items():
            t = threading.Thread(target=self._loop, args=(name, make), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _loop(self, name: str, make: Callable[[httpx.Client], httpx.Response]) -> None:
        with self.client_factory() as client:
            self._run(name, make, client)

    def _run(
        self, name: str, make: Callable[[httpx.Client], httpx.Response], client: httpx.Client
    ) -> None:
        while not self._stop.is_set() and len(self.samples) < self.max_requests:
            started = time.monotonic()
            try:
                r = make(client)
                latency = time.monotonic() - started
                try:
                    body = r.json()
                except ValueError:
                    body = r.text[:500]
                sample = Sample(name, started, latency, r.status_code, body)
            except httpx.HTTPError as exc:
                sample = Sample(name, started, time.monotonic() - started, 0, None, repr(exc))
            with self._lock:
                self.samples.append(sample)

    def stop(self) -> list[Sample]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        return self.samples

    def between(self, t0: float, t1: float, name: str | None = None) -> list[Sample]:
        with self._lock:
            return [
                s for s in self.samples if t0 <= s.started < t1 and (name is None or s.name == name)
            ]


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
