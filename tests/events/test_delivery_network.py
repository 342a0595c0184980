"""Where a delivery connects, and how it is signed: the host is resolved once and the
connection goes to the vetted address (no DNS rebinding), with the Host header and TLS server
name of the URL; deliveries to the notification engine are signed too (SPEC 7)."""

import datetime as dt
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import call_command

from events import crypto, services
from events.models import Delivery, DeliveryAttempt
from events.services import publish_event, relay_outbox
from tests.events.helpers import ACTOR, standard_webhooks_verify

pytestmark = pytest.mark.django_db

PUBLIC_IP = "93.184.216.34"
real_getaddrinfo = socket.getaddrinfo
real_create_connection = socket.create_connection


class FakeDns:
    """getaddrinfo with scripted answers for some names (others resolve for real), counting
    the lookups of each name."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: dict[str, int] = {}

    def __call__(self, host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return real_getaddrinfo(host, port, *args, **kwargs)
        turn = self.lookups.get(name, 0)
        self.lookups[name] = turn + 1
        scripted = self.answers[name]
        addresses = scripted[min(turn, len(scripted) - 1)]
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port or 0))
            for a in addresses
        ]


@pytest.fixture
def connects(monkeypatch):
    """Every TCP connect the process makes: a public address is refused at once (the tests
    have no internet), loopback connects for real."""
    seen: list[tuple[str, int]] = []

    def create_connection(address, *args, **kwargs):
        seen.append((address[0], address[1]))
        if address[0] == PUBLIC_IP:
            raise ConnectionRefusedError(111, "refused by the test")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return seen


def _subscribe(url):
    sub, secret = services.create_subscription(
        tenant_id="t-acme", event_types=["quota_exhausted"], webhook_url=url, actor=ACTOR
    )
    return sub, secret


def _publish():
    return publish_event(tenant_id="t-acme", event_type="quota_exhausted", payload={"q": 1})


def test_a_rebinding_answer_cannot_redirect_the_connection(receiver, monkeypatch, connects):
    # The first lookup answers a public address, every later one the loopback receiver: the
    # old client checked the first answer and then let httpx look the name up again.
    port = int(receiver.base_url.rsplit(":", 1)[1])
    dns = FakeDns({"hooks.example.com": [[PUBLIC_IP], ["127.0.0.1"]]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    _subscribe(f"http://hooks.example.com:{port}/hook")
    _publish()

    relay_outbox()

    assert dns.lookups == {"hooks.example.com": 1}
    assert connects == [(PUBLIC_IP, port)]
    assert receiver.requests == []
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "ConnectError" in delivery.last_error


def test_an_answer_with_any_private_address_is_refused_before_connecting(
    receiver, monkeypatch, connects
):
    port = int(receiver.base_url.rsplit(":", 1)[1])
    monkeypatch.setattr(
        socket, "getaddrinfo", FakeDns({"hooks.example.com": [[PUBLIC_IP, "127.0.0.1"]]})
    )
    _subscribe(f"http://hooks.example.com:{port}/hook")
    _publish()

    relay_outbox()

    assert connects == []
    assert receiver.requests == []
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.outcome, attempt.status_code) == ("failed", None)
    assert attempt.error == (
        "refused: hooks.example.com resolves to a private, loopback or link-local address"
    )


def test_the_next_address_is_tried_when_one_refuses(receiver, monkeypatch, connects, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    port = int(receiver.base_url.rsplit(":", 1)[1])
    monkeypatch.setattr(
        socket, "getaddrinfo", FakeDns({"hooks.example.com": [[PUBLIC_IP, "127.0.0.1"]]})
    )
    _subscribe(f"http://hooks.example.com:{port}/hook")
    _publish()

    assert relay_outbox()["delivered"] == 1

    assert connects == [(PUBLIC_IP, port), ("127.0.0.1", port)]
    (got,) = receiver.at("/hook")
    assert got.headers["host"] == f"hooks.example.com:{port}"


# --- https: the certificate is checked for the URL's host, sent as SNI --------------------


def _certificates(tmp_path, host):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_file, key_file


@pytest.fixture
def tls_receiver(tmp_path):
    host = "hooks.example.test"
    ca_pem, cert_file, key_file = _certificates(tmp_path, host)
    seen: dict[str, list] = {"sni": [], "requests": []}
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    server_ctx.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            seen["requests"].append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    try:
        yield {"host": host, "port": server.server_port, "seen": seen, "client_ctx": client_ctx}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_https_keeps_the_host_header_sni_and_certificate_check_of_the_url(
    tls_receiver, monkeypatch, settings
):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True  # the test's server is on loopback
    host, port = tls_receiver["host"], tls_receiver["port"]
    dns = FakeDns({host: [["127.0.0.1"]]})
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    monkeypatch.setattr("events.http.TLS_VERIFY", tls_receiver["client_ctx"])
    _, secret = _subscribe(f"https://{host}:{port}/hook")
    event = _publish()

    assert relay_outbox()["delivered"] == 1

    assert dns.lookups == {host: 1}
    assert tls_receiver["seen"]["sni"] == [host]
    ((headers, body),) = tls_receiver["seen"]["requests"]
    assert headers["host"] == f"{host}:{port}"
    assert headers["webhook-id"] == str(event.event_id)
    assert standard_webhooks_verify(secret, headers, body, int(headers["webhook-timestamp"]))


def test_a_certificate_for_another_name_is_a_failed_attempt(tls_receiver, monkeypatch, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    port = tls_receiver["port"]
    monkeypatch.setattr(socket, "getaddrinfo", FakeDns({"other.example.test": [["127.0.0.1"]]}))
    monkeypatch.setattr("events.http.TLS_VERIFY", tls_receiver["client_ctx"])
    _subscribe(f"https://other.example.test:{port}/hook")
    _publish()

    relay_outbox()

    assert tls_receiver["seen"]["requests"] == []
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("pending", None)
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.last_error


# --- the notification engine ----------------------------------------------------------------


def test_notification_engine_deliveries_are_signed_with_the_derived_secret(receiver, settings):
    settings.NOTIFICATION_ENGINE_URL = receiver.url("/engine")  # loopback: operator-configured
    settings.NOTIFICATION_ENGINE_SECRET = None
    event = _publish()

    relay_outbox()

    (got,) = receiver.at("/engine")
    secret = crypto.notification_engine_secret()
    assert secret.startswith("whsec_") and len(crypto.secret_bytes(secret)) == 32
    assert got.headers["webhook-id"] == str(event.event_id)
    assert standard_webhooks_verify(
        secret, got.headers, got.body, int(got.headers["webhook-timestamp"])
    )
    assert not standard_webhooks_verify(
        "whsec_" + "A" * 43 + "=", got.headers, got.body, int(got.headers["webhook-timestamp"])
    )


def test_a_configured_notification_engine_secret_signs_instead(receiver, settings, capsys):
    configured = crypto.new_secret()
    settings.NOTIFICATION_ENGINE_URL = receiver.url("/engine")
    settings.NOTIFICATION_ENGINE_SECRET = configured
    _publish()

    relay_outbox()

    (got,) = receiver.at("/engine")
    stamp = int(got.headers["webhook-timestamp"])
    assert standard_webhooks_verify(configured, got.headers, got.body, stamp)
    call_command("notification_engine_secret")
    assert capsys.readouterr().out.strip() == configured


def test_a_malformed_notification_engine_secret_is_a_failed_attempt_not_an_unsigned_one(
    receiver, settings
):
    settings.NOTIFICATION_ENGINE_URL = receiver.url("/engine")
    settings.NOTIFICATION_ENGINE_SECRET = "not-a-secret"
    _publish()

    relay_outbox()

    assert receiver.requests == []
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.outcome, attempt.error) == ("failed", "ImproperlyConfigured")
