"""Webhook targets may not reach private, loopback or link-local addresses (SSRF) unless
`WEBHOOK_ALLOW_PRIVATE_URLS`. Literal IPs (in any notation `inet_aton` accepts: `127.1`,
`0x7f000001`, `2130706433`) are judged when a subscription is written; a host name is resolved
once at every delivery, every address it resolves to must be public, and the connection goes
to one of exactly those addresses (see `events.http`), so a DNS answer that changes between
the check and the connect (rebinding) cannot redirect the request."""

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: RFC 1035: a name is at most 253 characters, a label at most 63.
MAX_HOST = 253
MAX_LABEL = 63


class UnsafeUrl(ValueError):
    pass


def _private(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def allow_private() -> bool:
    return bool(getattr(settings, "WEBHOOK_ALLOW_PRIVATE_URLS", False))


def literal_address(host: str) -> Address | None:
    """The address a host names literally: dotted or bracketed IPs, and the legacy IPv4
    forms the C resolver also accepts (`127.1`, `0x7f.1`, `2130706433`)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefABCDEFxX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _check_host_syntax(host: str) -> None:
    if len(host) > MAX_HOST:
        raise UnsafeUrl("webhook_url host is too long")
    if host.startswith("[") or ":" in host:
        return  # an IPv6 literal: urlsplit has already checked its brackets
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UnsafeUrl("webhook_url host is not a valid host name") from exc
    labels = ascii_host.rstrip(".").split(".")
    if any(not label or len(label) > MAX_LABEL for label in labels):
        raise UnsafeUrl("webhook_url host is not a valid host name")


def check_url_shape(url: str) -> str:
    """Scheme, host and (when the host is a literal IP) its address. Returns the host."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl("webhook_url is not a valid URL")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise UnsafeUrl("webhook_url is not a valid URL") from exc
    if parts.scheme not in {"http", "https"}:
        raise UnsafeUrl("webhook_url must be http or https")
    host = parts.hostname or ""
    if not host:
        raise UnsafeUrl("webhook_url has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("webhook_url must not carry credentials")
    del port
    _check_host_syntax(host)
    if allow_private():
        return host
    if host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
        raise UnsafeUrl("webhook_url points to a loopback host")
    literal = literal_address(host)
    if literal is not None and _private(literal):
        raise UnsafeUrl("webhook_url points to a private, loopback or link-local address")
    return host


def resolve(host: str, port: int, *, vet: bool) -> list[tuple[Any, ...]]:
    """Resolve `host` once: the `getaddrinfo` entries to connect to, in the resolver's order.

    With `vet` (and without `WEBHOOK_ALLOW_PRIVATE_URLS`) every address must be public,
    otherwise nothing is returned: an answer that mixes a public and a private address is
    refused as a whole.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"cannot resolve {host}") from exc
    if not infos:
        raise UnsafeUrl(f"cannot resolve {host}")
    if vet and not allow_private():
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if _private(address):
                raise UnsafeUrl(f"{host} resolves to a private, loopback or link-local address")
    return list(infos)
