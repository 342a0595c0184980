"""A real HTTP receiver on loopback for delivery tests, and event-test defaults."""

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from budgeting_site.platform import clock
from tests.events.helpers import MovableClock


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    base_url: str
    requests: list[Received] = field(default_factory=list)
    #: path → statuses to answer in turn; once used up, 200.
    script: dict[str, deque] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def answer(self, path: str, *statuses: int) -> None:
        self.script[path] = deque(statuses)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
def receiver():
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            rec: Receiver = state["receiver"]
            with rec.lock:
                rec.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                queue = rec.script.get(self.path)
                status = queue.popleft() if queue else 200
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(base_url=f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _events_defaults(settings):
    # After-commit nudges go to the in-process queue (nobody consumes it in tests): the tests
    # call the task functions themselves.
    settings.JOBS_IN_PROCESS = True
    settings.NOTIFICATION_ENGINE_URL = None
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = False


@pytest.fixture
def moving_clock():
    c = MovableClock(datetime(2025, 3, 1, 12, 0, tzinfo=UTC))
    with clock.override(c):
        yield c
