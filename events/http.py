"""The HTTP client of webhook delivery: the host is resolved once, the addresses are vetted,
and the TCP connection goes to one of exactly those addresses.

httpx (through httpcore) would otherwise resolve the name again when it connects, so a DNS
answer that changes between our check and its connect (rebinding) could lead a delivery to a
private address. httpcore asks its network backend to `connect_tcp(host, port)` with the
URL's host; our backend resolves and vets there and connects to the vetted IP. Everything
else stays as the URL says: the `Host` header, and for https the TLS server name (SNI) and
the certificate check, which httpcore takes from the URL, not from the socket.
"""

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from events import urlsafety

#: Per attempt: connect, write and read each bounded, and the whole attempt too.
ATTEMPT_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0

#: How https targets are verified; tests swap in a context that trusts their own CA.
TLS_VERIFY: ssl.SSLContext | bool = True


class PinnedBackend(httpcore.SyncBackend):
    """Resolves and vets the host itself, then connects to a vetted address."""

    def __init__(self, *, vet: bool) -> None:
        self.vet = vet

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        infos = urlsafety.resolve(host, port, vet=self.vet)
        error: Exception | None = None
        for info in infos:
            address = str(info[4][0])
            try:
                # A literal address: the socket layer does no further DNS lookup for it.
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error


class PinnedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool that uses `PinnedBackend`.

    httpx has no public parameter for httpcore's network backend, so the pool it builds is
    replaced by an equivalent one with ours (`tests/events` prove that it is used).
    """

    def __init__(self, *, vet: bool, verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(verify=verify, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=1,
            max_keepalive_connections=0,
            network_backend=PinnedBackend(vet=vet),
        )


def post(url: str, body: bytes, headers: dict[str, str], *, vet: bool) -> httpx.Response:
    """One POST, no redirects followed (a redirect could lead anywhere), no proxies from the
    environment. Raises `urlsafety.UnsafeUrl` when the vetted resolution refuses the host."""
    timeout = httpx.Timeout(
        ATTEMPT_TIMEOUT_SECONDS, connect=min(CONNECT_TIMEOUT_SECONDS, ATTEMPT_TIMEOUT_SECONDS)
    )
    transport = PinnedTransport(vet=vet, verify=TLS_VERIFY)
    with httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    ) as client:
        return client.post(url, content=body, headers=headers)
