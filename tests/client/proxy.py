"""A small TCP proxy in front of the live test server that can lose answers.

For a request the `drop` predicate picks, it forwards the request, waits until the server has
answered in full (so the work is done and committed), then closes the client's connection
without relaying a byte: from the client's side, the connection dropped mid-request. Every
other request is relayed as is. One request per connection (`Connection: close` upstream).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    dropped: bool


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return head + b"\r\n\r\n" + rest


def _parse(raw: bytes) -> tuple[str, str, dict[str, str], bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, path, _ = lines[0].decode().split(" ", 2)
    headers = {}
    kept = [lines[0]]
    for line in lines[1:]:
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
        if name.strip().lower() not in ("connection", "keep-alive"):
            kept.append(line)
    kept.append(b"Connection: close")
    return method, path, headers, body, b"\r\n".join(kept) + b"\r\n\r\n" + body


class DroppingProxy:
    def __init__(self, upstream: tuple[str, int], drop: Callable[[Seen], bool]) -> None:
        self.upstream = upstream
        self.drop = drop
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()

    def _serve(self) -> None:
        self._server.settimeout(0.05)  # so that a stop is noticed promptly
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(60)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            raw = _read_request(conn)
            if raw is None:
                return
            method, path, headers, body, forwarded = _parse(raw)
            seen = Seen(method, path, headers, body, dropped=False)
            with self._lock:
                seen.dropped = bool(self.drop(seen))
                self.seen.append(seen)
            with socket.create_connection(self.upstream, timeout=60) as upstream:
                upstream.sendall(forwarded)
                response = b""
                while True:
                    chunk = upstream.recv(65536)
                    if not chunk:
                        break
                    response += chunk
            if seen.dropped:
                # The server has answered (the work is committed); the client never hears it.
                conn.shutdown(socket.SHUT_RDWR)
                return
            conn.sendall(response)


def drop_first(method: str, path_suffix: str, times: int = 1) -> Callable[[Seen], bool]:
    """Drop the answers of the first `times` requests with this method and path ending."""
    left = {"n": times}

    def predicate(seen: Seen) -> bool:
        matches = seen.method == method and seen.path.split("?")[0].endswith(path_suffix)
        if matches and left["n"] > 0:
            left["n"] -= 1
            return True
        return False

    return predicate
