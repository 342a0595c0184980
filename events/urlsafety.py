"""Webhook targets may not reach private, loopback or link-local addresses (SSRF) unless
`WEBHOOK_ALLOW_PRIVATE_URLS`. Literal IPs are judged when a subscription is written; the
resolved addresses of a host name at every delivery."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeUrl(ValueError):
    pass


def _private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def allow_private() -> bool:
    return bool(getattr(settings, "WEBHOOK_ALLOW_PRIVATE_URLS", False))


def check_url_shape(url: str) -> str:
    """Scheme, host and (when the host is a literal IP) its address. Returns the host."""
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
    if allow_private():
        return host
    if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
        raise UnsafeUrl("webhook_url points to a loopback host")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return host
    if _private(literal):
        raise UnsafeUrl("webhook_url points to a private, loopback or link-local address")
    return host


def check_resolved(url: str) -> None:
    """At delivery: every address the host resolves to must be public."""
    host = check_url_shape(url)
    if allow_private():
        return
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"cannot resolve {host}") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if _private(address):
            raise UnsafeUrl(f"{host} resolves to a private, loopback or link-local address")
