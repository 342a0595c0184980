"""Redis: one Lua script per check, one round trip, fast failure.

- The script (`check.lua`) is loaded once and called by EVALSHA; on NOSCRIPT (a restarted or
  failed-over Redis) it is loaded again and the call repeated once.
- Every key of a tenant carries the hash tag ``{tenant}``, so one check touches one Redis
  Cluster slot; every key the script writes gets its expiry in the same script.
- The clock is Redis `TIME`, read inside the script. A `now_ms` argument is honoured only when
  the store was built with ``allow_injected_clock=True`` (tests), and refused otherwise.
- Connections are redis-py `Connection` objects used directly (send/read), from a small
  lock-free stack, with short socket timeouts and no retries; a circuit breaker turns a dead or
  blackholed Redis into an immediate degraded answer after a few timeouts.
- A failure never raises out of `check`: the result is `degraded=True` with each limit decided
  by its fail mode.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.connection import Connection, parse_url
from redis.exceptions import NoScriptError, RedisError, ResponseError

from ..breaker import CircuitBreaker
from ..clock import Clock, MonotonicClock
from ..types import CheckBatch, CheckResult, Compiled, LimitSpec, Outcome, compile_spec
from .base import (
    DEFAULT_SLIDING_LOG_MAX,
    OUTCOME_BY_CODE,
    Store,
    StoredReceipt,
    build_decided,
    decode_reply,
    degraded_result,
    result_from_stored,
    storage_key,
)

logger = logging.getLogger(__name__)

CHECK_SCRIPT = resources.files(__package__).joinpath("check.lua").read_text(encoding="utf-8")
CHECK_SHA = hashlib.sha1(CHECK_SCRIPT.encode(), usedforsecurity=False).hexdigest()

_BUMP_EPOCH = """
local v = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return v
"""

#: XRANGE as one string: entries joined by \x1e, an entry's id, field names and values by \x1f.
#: One bulk reply instead of ten per entry (less than half the drain's decoding); neither separator
#: occurs in an entry (ids, digits, a UUID, JSON written with ASCII escapes by the check).
_READ_RECEIPTS = """
local out = {}
for i, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])) do
  out[i] = entry[1] .. '\\31' .. table.concat(entry[2], '\\31')
end
return table.concat(out, '\\30')
"""

_ESCAPES = {ord("{"): "%7B", ord("}"): "%7D", ord("%"): "%25"}


def tenant_tag(tenant: str) -> str:
    """The tenant as it appears inside ``{...}``: braces escaped so the hash tag stays whole."""
    if "{" in tenant or "}" in tenant or "%" in tenant:
        return tenant.translate(_ESCAPES)
    return tenant


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _pack(args: Sequence[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join([_bulk(a) for a in args])


def _read_bulk(sock: socket.socket) -> bytes | None:
    """Read one RESP reply that must be a bulk string (or an error) from a raw socket.

    The check's only reply is one bulk string, so reading it here skips redis-py's generic
    parser; the socket's own timeout bounds every recv.
    """
    buf = sock.recv(65536)
    while b"\r\n" not in buf:
        more = sock.recv(65536)
        if not more:
            raise redis.ConnectionError("connection closed by server")
        buf += more
    head_end = buf.index(b"\r\n")
    kind = buf[:1]
    if kind == b"$":
        size = int(buf[1:head_end])
        if size < 0:
            if len(buf) != head_end + 2:
                raise redis.ConnectionError("unexpected bytes after the reply")
            return None
        need = head_end + 2 + size + 2
        while len(buf) < need:
            more = sock.recv(max(65536, need - len(buf)))
            if not more:
                raise redis.ConnectionError("connection closed by server")
            buf += more
        if len(buf) != need:
            raise redis.ConnectionError("unexpected bytes after the reply")
        return buf[head_end + 2 : head_end + 2 + size]
    if kind == b"_":  # RESP3 null
        return None
    if kind == b"-":
        message = buf[1:head_end].decode(errors="replace")
        if message.startswith("NOSCRIPT"):
            raise NoScriptError(message)
        raise ResponseError(message)
    raise redis.ConnectionError(f"unexpected reply type {kind!r}")


_EVALSHA = b"$7\r\nEVALSHA\r\n"
_EMPTY = b"$0\r\n\r\n"
_ZERO = b"$1\r\n0\r\n"
_ONE = b"$1\r\n1\r\n"


class RedisStore(Store):
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "rl",
        socket_timeout: float = 0.05,
        connect_timeout: float | None = None,
        allow_injected_clock: bool = False,
        sliding_log_max: int = DEFAULT_SLIDING_LOG_MAX,
        breaker: CircuitBreaker | None = None,
        receipt_stream_ttl_seconds: int = 7 * 86_400,
        epoch_ttl_seconds: int = 30 * 86_400,
        clock: Clock | None = None,
        max_idle_connections: int = 64,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        self.connect_timeout = socket_timeout if connect_timeout is None else connect_timeout
        self.allow_injected_clock = allow_injected_clock
        self.sliding_log_max = sliding_log_max
        self.breaker = breaker or CircuitBreaker()
        self.receipt_stream_ttl_ms = receipt_stream_ttl_seconds * 1000
        self.epoch_ttl_ms = epoch_ttl_seconds * 1000
        self.clock: Clock = clock or MonotonicClock()
        self.max_idle_connections = max_idle_connections
        self.receipt_index_key = f"{prefix}:receipt-tenants"
        kwargs = parse_url(url)
        self._connection_class = kwargs.pop("connection_class", Connection)
        self._connection_kwargs: dict[str, Any] = {
            **kwargs,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": None,
            "driver_info": None,
            "health_check_interval": 0,
            # RESP2: no HELLO round trip on connect, and the replies `_read_bulk` expects.
            "protocol": 2,
        }
        self._idle: list[Connection] = []
        self._pid = os.getpid()
        self._admin: redis.Redis | None = None
        self._admin_lock = threading.Lock()
        self._sha = CHECK_SHA.encode()
        self._script = CHECK_SCRIPT.encode()
        # Per-spec and per-tenant encodings, reused across checks (bounded: cleared when big).
        self._sha_arg = _bulk(self._sha)
        self._stream_ttl_arg = _bulk(b"%d" % self.receipt_stream_ttl_ms)
        self._spec_cache: dict[tuple[LimitSpec, int | None], tuple[Compiled, bytes, bytes]] = {}
        self._prefix_cache: dict[str, bytes] = {}

    # --- keys ---------------------------------------------------------------------------------

    def tenant_prefix(self, tenant: str) -> str:
        return f"{self.prefix}:{{{tenant_tag(tenant)}}}:"

    def key_for(self, tenant: str, spec: LimitSpec) -> str:
        return self.tenant_prefix(tenant) + storage_key(spec)

    # --- connections --------------------------------------------------------------------------

    def _acquire(self) -> Connection:
        if self._pid != os.getpid():
            # A forked child must not share its parent's sockets.
            self._idle = []
            self._pid = os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            conn: Connection = self._connection_class(**self._connection_kwargs)
            return conn

    def _release(self, conn: Connection) -> None:
        if len(self._idle) < self.max_idle_connections and self._pid == os.getpid():
            self._idle.append(conn)
        else:
            conn.disconnect()

    def _roundtrip_any(self, payload: bytes) -> bytes | None:
        """One raw round trip of a packed command with a bulk reply (for the benchmark)."""
        return self._roundtrip(payload)

    def _roundtrip(self, payload: bytes) -> bytes | None:
        """Send one packed command and read its bulk-string reply; reload on NOSCRIPT."""
        conn = self._acquire()
        try:
            if conn._sock is None:
                conn.connect()
            sock: socket.socket = conn._sock  # type: ignore[assignment]
            sock.sendall(payload)
            try:
                reply = _read_bulk(sock)
            except NoScriptError:
                sock.sendall(_pack([b"SCRIPT", b"LOAD", self._script]))
                _read_bulk(sock)
                sock.sendall(payload)
                reply = _read_bulk(sock)
        except BaseException:
            conn.disconnect()
            raise
        self._release(conn)
        return reply

    def _entry(self, spec: LimitSpec, api: bool = False) -> tuple[Compiled, bytes, bytes]:
        cap = None if api else self.sliding_log_max
        cached = self._spec_cache.get((spec, cap))
        if cached is not None:
            return cached
        c = compile_spec(spec, sliding_log_max=cap)
        params = b"".join(
            _bulk(b"%d" % v)
            for v in (c.algorithm.code, c.n, c.limit, c.burst, c.window_ms, c.unit, c.drain)
        ) + (_ONE if spec.shadow else _ZERO)
        entry = (c, storage_key(spec).encode(), params)
        if len(self._spec_cache) > 4096:
            self._spec_cache.clear()
        self._spec_cache[(spec, cap)] = entry
        return entry

    def _tenant_prefix_bytes(self, tenant: str) -> bytes:
        cached = self._prefix_cache.get(tenant)
        if cached is None:
            cached = self.tenant_prefix(tenant).encode()
            if len(self._prefix_cache) > 4096:
                self._prefix_cache.clear()
            self._prefix_cache[tenant] = cached
        return cached

    def admin(self) -> redis.Redis:
        """A regular client for the slow paths (epochs, receipts drain, clear)."""
        with self._admin_lock:
            if self._admin is None:
                self._admin = redis.Redis.from_url(
                    self.url,
                    socket_timeout=max(self.socket_timeout, 1.0),
                    socket_connect_timeout=max(self.connect_timeout, 1.0),
                )
            return self._admin

    def close(self) -> None:
        while self._idle:
            self._idle.pop().disconnect()
        if self._admin is not None:
            self._admin.close()

    # --- the check ----------------------------------------------------------------------------

    def check(self, batch: CheckBatch, *, now_ms: int | None = None) -> CheckResult:
        if now_ms is not None and not self.allow_injected_clock:
            raise ValueError("an injected clock needs RedisStore(allow_injected_clock=True)")
        entries = [self._entry(s) for s in batch.limits]
        api_entry = self._entry(batch.api_limit, True) if batch.api_limit is not None else None
        compiled = [e[0] for e in entries]
        if not self.breaker.allow():
            return degraded_result(batch, self.clock(), "circuit_open")

        prefix = self._tenant_prefix_bytes(batch.tenant)
        idem, receipt = batch.idempotency, batch.receipt
        epoch_key = _bulk(prefix + b"epoch")
        keys = [
            epoch_key,
            _bulk(prefix + b"idem:" + idem.key.encode()) if idem else epoch_key,
            _bulk(prefix + b"receipts") if receipt else epoch_key,
            _bulk(prefix + api_entry[1]) if api_entry else epoch_key,
        ]
        keys += [_bulk(prefix + e[1]) for e in entries]
        params = [e[2] for e in entries]
        if api_entry is not None:
            params.insert(0, api_entry[2])
        argv = [
            _EMPTY if now_ms is None else _bulk(b"%d" % now_ms),
            _ONE if batch.dry_run else _ZERO,
            _EMPTY if batch.expected_epoch is None else _bulk(b"%d" % batch.expected_epoch),
            _bulk(idem.fingerprint.encode()) if idem else _EMPTY,
            _bulk(b"%d" % (idem.ttl_seconds * 1000)) if idem else _ZERO,
            _bulk(receipt.receipt_id.encode()) if receipt else _EMPTY,
            _bulk(receipt.facts.encode()) if receipt else _EMPTY,
            self._stream_ttl_arg,
            _ONE if api_entry is not None else _ZERO,
            _bulk(b"%d" % len(entries)),
            _bulk(b"2") if idem is not None and not idem.store_denials else _ONE,
        ]
        count = 3 + len(keys) + len(argv) + 8 * len(params)
        payload = b"".join(
            [
                b"*%d\r\n" % count,
                _EVALSHA,
                self._sha_arg,
                _bulk(b"%d" % len(keys)),
                *keys,
                *argv,
                *params,
            ]
        )
        try:
            reply = self._roundtrip(payload)
            if reply is None:
                raise ResponseError("the check script answered nil")
        except (RedisError, OSError) as exc:
            self.breaker.record_failure()
            timeout = isinstance(exc, TimeoutError | redis.TimeoutError)
            reason = "timeout" if timeout else "error"
            logger.warning(
                "ratelimit.store_degraded",
                extra={
                    "reason": reason,
                    "error": type(exc).__name__,
                    "breaker": self.breaker.state,
                    "detail": str(exc),
                },
            )
            return degraded_result(batch, self.clock(), reason)
        self.breaker.record_success()

        code, now, epoch_raw, allowed, xlen, api_item, items, stored = decode_reply(reply)
        outcome = OUTCOME_BY_CODE[code]
        epoch = None if epoch_raw < 0 else epoch_raw
        if outcome is Outcome.DECIDED:
            if receipt is not None and xlen == 1:
                self._register_receipt_tenant(batch.tenant)
            return build_decided(
                batch,
                compiled,
                now,
                allowed,
                api_item,
                items,
                epoch=epoch,
                receipt_id=receipt.receipt_id if receipt else None,
                receipt_written=receipt is not None,
            )
        if outcome is Outcome.REPLAYED:
            return result_from_stored(batch, compiled, stored, epoch=epoch, api_now=api_item)
        if outcome is Outcome.STALE_POLICIES:
            return CheckResult(outcome=outcome, now_ms=now, allowed=False, epoch=epoch)
        return build_decided(
            batch, compiled, now, False, api_item, [], epoch=epoch, outcome=outcome
        )

    # --- epochs -------------------------------------------------------------------------------

    def get_epoch(self, tenant: str) -> int:
        """On the check path (a cold cache): the fast socket, the short timeout, the breaker.

        Raises RedisError when Redis cannot answer; the caller decides without the epoch.
        """
        if not self.breaker.allow():
            raise redis.ConnectionError("circuit open")
        try:
            value = self._roundtrip(_pack([b"GET", self._tenant_prefix_bytes(tenant) + b"epoch"]))
        except (RedisError, OSError) as exc:
            self.breaker.record_failure()
            raise redis.ConnectionError(str(exc)) from exc
        self.breaker.record_success()
        return int(value) if value is not None else 0

    def bump_epoch(self, tenant: str) -> int:
        if not self.breaker.allow():
            raise redis.ConnectionError("circuit open")
        client = self.admin()
        return int(
            client.eval(_BUMP_EPOCH, 1, self.tenant_prefix(tenant) + "epoch", self.epoch_ttl_ms)
        )

    def clear(self, tenant: str, specs: Sequence[LimitSpec]) -> None:
        if specs:
            self.admin().delete(*(self.key_for(tenant, s) for s in specs))

    # --- receipts -----------------------------------------------------------------------------

    def _register_receipt_tenant(self, tenant: str) -> None:
        # The stream went from empty to one entry: make sure the drainer knows the tenant.
        # Best effort: `scan_receipt_tenants` finds any stream this misses.
        try:
            pipe = self.admin().pipeline(transaction=False)
            pipe.sadd(self.receipt_index_key, tenant)
            pipe.pexpire(self.receipt_index_key, self.receipt_stream_ttl_ms)
            pipe.execute()
        except RedisError:
            logger.warning("ratelimit.receipt_index_failed", exc_info=True)

    def receipt_tenants(self) -> list[str]:
        members: Any = self.admin().smembers(self.receipt_index_key)
        return sorted(_text(m) for m in members)

    def scan_receipt_tenants(self) -> list[str]:
        """Every tenant with a receipt stream, found by SCAN (the safety net for the index)."""
        found: set[str] = set()
        pattern = f"{self.prefix}:{{*}}:receipts"
        for key in self.admin().scan_iter(match=pattern, count=1000, _type="stream"):
            text = _text(key)
            tag = text[len(self.prefix) + 2 : -len("}:receipts")]
            found.add(tag.replace("%7B", "{").replace("%7D", "}").replace("%25", "%"))
        return sorted(found)

    def read_receipts(self, tenant: str, count: int = 500) -> list[StoredReceipt]:
        stream = self.tenant_prefix(tenant) + "receipts"
        blob: Any = self.admin().eval(_READ_RECEIPTS, 1, stream, count)
        out = []
        for text in blob.decode().split("\x1e") if blob else ():
            entry_id, *pairs = text.split("\x1f")
            fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
            out.append(
                StoredReceipt(
                    entry_id=entry_id,
                    tenant=tenant,
                    receipt_id=fields["rid"],
                    facts=fields["facts"],
                    result=fields["result"],
                    timestamp_ms=int(fields["ts"]),
                )
            )
        return out

    def ack_receipts(self, tenant: str, entry_ids: Sequence[str]) -> int:
        client = self.admin()
        stream = self.tenant_prefix(tenant) + "receipts"
        removed = int(client.xdel(stream, *entry_ids)) if entry_ids else 0
        if client.xlen(stream) == 0:
            # SREM first, then look again: a check that added an entry in between either saw
            # xlen == 1 after our SREM (and re-registers) or is seen here.
            client.srem(self.receipt_index_key, tenant)
            if client.xlen(stream) > 0:
                client.sadd(self.receipt_index_key, tenant)
        return removed


__all__ = ["CHECK_SCRIPT", "CHECK_SHA", "RedisStore", "tenant_tag"]
