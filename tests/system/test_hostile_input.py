"""Hostile input: schemathesis over the committed OpenAPI schema, against the real stack.

- Valid credentials (every role, one tenant), positive and negative examples for every
  operation: never a 5xx, and every documented response matches its schema.
- No credentials: 401 on every protected operation. Wrong roles: 403.
  (Foreign ids → 404 on every by-id operation: test_isolation.py, with real ids.)

Runs with API_RATE_LIMITS=off so that only the behaviour under test answers. The number of
examples per operation is bounded in CI (SYSTEM_EXAMPLES, default 8) and larger under
`make proof` (60).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

try:
    import schemathesis
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI", "").lower() == "true":
        raise ImportError(
            "the hostile-input suite needs schemathesis==4.32.5 in the dev dependencies"
        ) from None
    pytest.skip("schemathesis is not installed", allow_module_level=True)

from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.system.conftest import PROOF_FULL, TENANT
from tests.system.routes import ALL_ROLES, roles_table, wrong_roles

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("SYSTEM_EXAMPLES", "60" if PROOF_FULL else "8"))
AUTH_EXAMPLES = max(2, EXAMPLES // 4)


def _load_schema() -> dict:
    """The committed openapi.yaml (CI proves it matches the code); generated from the code
    when it is not there yet."""
    committed = REPO / "openapi.yaml"
    if committed.exists():
        return yaml.safe_load(committed.read_text())
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiYamlRenderer

    generated = SchemaGenerator().get_schema(request=None, public=True)
    # Through YAML, as `make openapi` writes it (Decimal bounds become numbers).
    return yaml.safe_load(OpenApiYamlRenderer().render(generated, renderer_context={}))


RAW_SCHEMA = _load_schema()


def _schema(coverage: bool):
    """Schemathesis' coverage phase (boundary values, unexpected methods for every operation)
    is thorough but slow: on for the valid-credentials run under `make proof`, off otherwise."""
    config = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": coverage}}})
    return schemathesis.openapi.from_dict(RAW_SCHEMA, config=config)


schema = _schema(coverage=PROOF_FULL)
auth_schema = _schema(coverage=False)

COMMON = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "phases": [Phase.explicit, Phase.generate],
    "derandomize": not PROOF_FULL,
    "database": None,
}


def _roles_for_request(method: str, url: str, body: bytes = b"{}"):
    """(resolved, roles) for the request as Django's URL resolver routes it: a generated path
    parameter can contain a slash and land on another endpoint, or on the catch-all 404."""
    from django.urls import Resolver404, resolve

    path = unquote(urlsplit(url).path)
    try:
        match = resolve(path)
    except Resolver404:
        return False, None
    cls = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
    if cls is None:
        return False, None
    table = roles_table(cls, body)
    if table is None:
        return False, None
    actions = getattr(match.func, "actions", None) or {}
    action = actions.get(method.lower())
    if (action is None and actions) or (not actions and not hasattr(cls, method.lower())):
        return True, "no-method"
    if method.lower() in ("options", "head") and method.lower() not in table:
        return True, "no-method"
    for key in (action, method.lower()):
        if key and key in table:
            return True, table[key]
    return True, frozenset()


@schema.parametrize()
@settings(max_examples=EXAMPLES, **COMMON)
def test_valid_credentials_never_5xx_and_conform_to_the_schema(case, stack):
    headers = stack.headers(TENANT, sorted(ALL_ROLES), sub="fuzzer")
    case.call_and_validate(
        base_url=stack.base_url,
        headers=headers,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        timeout=15,
    )


@auth_schema.parametrize()
@settings(max_examples=AUTH_EXAMPLES, **COMMON)
def test_no_credentials_is_401_on_every_protected_operation(case, stack):
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    case.headers.pop("X-API-Key", None)
    response = case.call(base_url=stack.base_url, timeout=15)
    assert response.status_code < 500, response.text[:300]
    resolved, roles = _roles_for_request(response.request.method, response.request.url)
    if not resolved:
        assert response.status_code in (200, 404, 400, 405), response.text[:300]
        return
    if roles is None:  # public
        return
    if roles == "no-method":
        assert response.status_code in (401, 405), response.text[:300]
        return
    assert response.status_code == 401, f"{case.method} {response.request.url}: {response.text}"
    assert response.json()["error_code"] == "UNAUTHORIZED"


@auth_schema.parametrize()
@settings(max_examples=AUTH_EXAMPLES, **COMMON)
def test_wrong_roles_is_403_on_every_protected_operation(case, stack):
    # Route the request as Django will, then pick roles that hold none of the needed ones.
    kwargs = case.as_transport_kwargs(base_url=stack.base_url)
    body = kwargs.get("data") or kwargs.get("content") or b""
    if kwargs.get("json") is not None:
        import json

        body = json.dumps(kwargs["json"]).encode()
    if isinstance(body, str):
        body = body.encode()
    resolved, roles = _roles_for_request(kwargs["method"], kwargs["url"], body or b"{}")
    if not resolved or roles is None or roles == "no-method":
        return
    headers = stack.headers(TENANT, wrong_roles(roles), sub="fuzzer-wrong-role")
    response = case.call(base_url=stack.base_url, headers=headers, timeout=15)
    assert response.status_code == 403, f"{case.method} {response.request.url}: {response.text}"
    assert response.json()["error_code"] == "FORBIDDEN"
