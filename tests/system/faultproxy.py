"""A small TCP proxy that can pass, refuse, hold (blackhole) or drop connections.

The stack under test reaches its Redis and PostgreSQL only through one of these, so a fault is
injected on the tests' own connections and no other process on the machine loses a service.

Modes:
- ``pass``: bytes flow both ways.
- ``refuse``: new connections are reset at once (the client sees ECONNRESET on first use);
  existing ones keep flowing.
- ``hold``: a blackhole. New connections are accepted and never answered; existing ones stop
  forwarding in both directions (nothing is read, so the client's reads time out).
- ``drop()``: an action, not a mode: every open connection is reset now.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time

PASS = "pass"
REFUSE = "refuse"
HOLD = "hold"
_MODES = {PASS, REFUSE, HOLD}


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a crashed or unplugged peer would look."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, name: str = "proxy") -> None:
        self.name = name
        self.upstream = (upstream_host, upstream_port)
        self._mode = PASS
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._stopping = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"{name}-accept", daemon=True
        )
        self._thread.start()

    # --- control -------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        if mode not in _MODES:
            raise ValueError(mode)
        with self._lock:
            leaving_hold = self._mode == HOLD and mode != HOLD
            self._mode = mode
            held = [p for p in self._pairs if p.upstream is None] if leaving_hold else []
            self._pairs.difference_update(held)
        # Connections accepted while holding were never wired up: reset them, so their
        # clients reconnect instead of waiting out their own timeout.
        for pair in held:
            pair.close()

    def drop(self) -> int:
        """Reset every open connection; returns how many were dropped."""
        with self._lock:
            pairs = list(self._pairs)
            self._pairs.clear()
        for pair in pairs:
            pair.close()
        return len(pairs)

    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for p in self._pairs if not p.closed.is_set())

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.drop()
        self._thread.join(timeout=2)

    # --- internals -----------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            mode = self._mode
            if mode == REFUSE:
                _reset(client)
                continue
            if mode == HOLD:
                pair = _Pair(client, None)
                with self._lock:
                    self._pairs.add(pair)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                _reset(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.setblocking(False)
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(
                target=self._pump, args=(pair,), name=f"{self.name}-pump", daemon=True
            ).start()

    def _pump(self, pair: _Pair) -> None:
        assert pair.upstream is not None
        sel = selectors.DefaultSelector()
        sel.register(pair.client, selectors.EVENT_READ, pair.upstream)
        sel.register(pair.upstream, selectors.EVENT_READ, pair.client)
        try:
            while not pair.closed.is_set() and not self._stopping.is_set():
                if self._mode == HOLD:
                    # Blackhole: read nothing, forward nothing, until the mode changes.
                    time.sleep(0.02)
                    continue
                for key, _ in sel.select(timeout=0.05):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    dst: socket.socket = key.data
                    try:
                        data = src.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        return
                    try:
                        dst.setblocking(True)
                        dst.sendall(data)
                        dst.setblocking(False)
                    except OSError:
                        return
        finally:
            sel.close()
            pair.close()
            with self._lock:
                self._pairs.discard(pair)
