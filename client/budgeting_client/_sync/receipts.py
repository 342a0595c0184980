# GENERATED from budgeting_client/_async/receipts.py by client/tools/unasync.py: do not edit.
"""The receipt verifier with its key cache.

Written once in async form; `_sync/receipts.py` is generated from this file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from budgeting_client import receipts as _r
from budgeting_client.receipts import PublishedKey, Verification

# A kid that was still unknown after a refetch is not fetched for again for this long, so a
# file full of receipts naming a bogus kid costs one fetch, not one per receipt.
UNKNOWN_KID_BACKOFF_SECONDS = 300.0


class ReceiptVerifier:
    """Verifies receipts offline against a cached set of published keys.

    `fetch_keys` returns the `GET /receipts/keys` document; it is called on the first
    verification and again (once) when a receipt names a `kid` the cache does not have — that
    is how a key rotation is picked up. Pass `keys=` (a JWKS document) to verify with no
    network at all (`fetch_keys=None`).
    """

    def __init__(
        self,
        *,
        fetch_keys: Callable[[], Any] | None = None,
        keys: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch_keys
        self._clock = clock
        self._keys: dict[str, PublishedKey] = _r.parse_jwks(keys) if keys is not None else {}
        self._fetched = keys is not None
        self._missing: dict[str, float] = {}
        self.fetch_count = 0

    @property
    def keys(self) -> dict[str, PublishedKey]:
        return dict(self._keys)

    def refresh(self) -> None:
        if self._fetch is None:
            return
        document = self._fetch()
        self.fetch_count += 1
        self._keys.update(_r.parse_jwks(document))
        self._fetched = True

    def key_for(self, kid: str | None) -> PublishedKey | None:
        if not kid:
            return None
        if not self._fetched:
            self.refresh()
        if kid in self._keys:
            return self._keys[kid]
        missed_at = self._missing.get(kid)
        if missed_at is not None and self._clock() - missed_at < UNKNOWN_KID_BACKOFF_SECONDS:
            return None
        self.refresh()
        if kid not in self._keys:
            self._missing[kid] = self._clock()
            return None
        return self._keys[kid]

    def verify(self, receipt: Mapping[str, Any]) -> Verification:
        if not isinstance(receipt, Mapping):
            return Verification(None, False, _r.MALFORMED)
        kid = receipt.get("kid")
        key = self.key_for(str(kid) if kid is not None else None)
        return _r.verify_with_key(receipt, key)
