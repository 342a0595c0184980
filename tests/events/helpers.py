import base64
import hashlib
import hmac
from datetime import datetime, timedelta


class MovableClock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kwargs: float) -> None:
        self.t += timedelta(**kwargs)


ACTOR = {"principal": "tester", "credential_id": "", "instance": "test"}


def standard_webhooks_verify(secret: str, headers: dict, body: bytes, now: int, tolerance=300):
    """An independent Standard Webhooks check: HMAC-SHA256 of "id.timestamp.body" with the
    base64-decoded secret (after `whsec_`), compared in constant time with any v1 signature."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for part in headers["webhook-signature"].split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False
