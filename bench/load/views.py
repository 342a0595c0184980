"""The two references every figure of the load benchmark is quoted beside.

- `BareView`: a bare DRF endpoint. No authentication, no parsing, a constant answer: the
  floor that Django, DRF and gunicorn cost on this machine.
- `MinimalCheckView`: the least a rate-limit check can do: decode the JWT (HS256, the
  configured secret), validate the body with a DRF serializer, make one EVALSHA against the
  rate-limit Redis, and answer. The product's check is asked to reach 0.8x of its throughput.

Both run in the product's own process with its own middleware, so the ratios compare views.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jwt
import redis
from django.conf import settings
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

# A fixed-window counter: one key, one round trip, an expiry in the same step.
_SCRIPT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if n > tonumber(ARGV[2]) then return {0, n} end
return {1, n}
"""


@lru_cache(maxsize=1)
def _redis() -> tuple[redis.Redis, str]:
    timeout = settings.RATELIMIT_REDIS_TIMEOUT_MS / 1000  # the product's store's timeout
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    return client, client.script_load(_SCRIPT)


class _Body(serializers.Serializer):
    tenant_id = serializers.CharField(max_length=128, required=False)
    resource_type = serializers.CharField(max_length=128)
    request_count = serializers.IntegerField(min_value=1, default=1)
    resource_key = serializers.CharField(max_length=128, required=False)


class BareView(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    def post(self, request: Request) -> Response:
        return Response({"ok": True})

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class MinimalCheckView(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    def post(self, request: Request) -> Response:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        _, _, token = header.partition(" ")
        try:
            claims = jwt.decode(
                token, settings.JWT_SECRET, algorithms=["HS256"], options={"require": ["exp"]}
            )
        except jwt.PyJWTError:
            return Response({"error_code": "UNAUTHORIZED"}, status=401)
        body = _Body(data=request.data)
        if not body.is_valid():
            return Response({"error_code": "VALIDATION_ERROR", "details": body.errors}, 400)
        data = body.validated_data
        client, sha = _redis()
        key = f"bench:{{{claims['tenant_id']}}}:{data['resource_type']}"
        allowed, count = client.evalsha(sha, 1, key, data["request_count"], 10**9, 60_000)
        return Response({"allowed": bool(allowed), "count": int(count)})
