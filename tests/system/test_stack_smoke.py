"""The stack starts from the repository's code and answers over HTTP."""

import pytest

pytestmark = [pytest.mark.system, pytest.mark.postgres, pytest.mark.redis]


def test_health_reports_every_dependency_up(healthy_stack):
    r = healthy_stack.client().get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "UP", body
    assert body["dependencies"]["database"]["status"] == "UP"
    assert body["dependencies"]["cache"]["status"] == "UP"
    assert body["dependencies"]["broker"]["status"] == "UP"


def test_unknown_url_under_prefix_is_flat_404(healthy_stack):
    r = healthy_stack.client().get("/no-such-thing")
    assert r.status_code == 404
    assert r.json()["error_code"] == "NOT_FOUND"


def test_unknown_url_under_prefix_is_404_for_every_method(healthy_stack):
    # SPEC 1.3: NOT_FOUND also for unknown URLs under the prefix, whatever the method (a POST
    # must not be refused by CSRF protection first: the API has no cookies).
    with healthy_stack.client() as c:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = c.request(method, "/no-such-thing", json={})
            assert r.status_code == 404, (method, r.status_code, r.text[:200])
            assert r.json()["error_code"] == "NOT_FOUND"
