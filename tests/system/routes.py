"""Every API endpoint, derived from the URL configuration (not from a hand-kept list), with
the roles each method demands: the tenant-isolation and permission sweeps iterate over this,
so an endpoint added tomorrow is swept without anyone remembering to add it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PREFIX = "budget/v1/"
ALL_ROLES = frozenset(
    {
        "tenant_admin",
        "financial_controller",
        "auditor",
        "tenant_user",
        "system_architect",
        "service",
    }
)
_NOBODY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Route:
    template: str  # "/budgets/{budget_id}/utilization", relative to /budget/v1
    method: str  # upper case
    view: str  # dotted class name, for messages
    roles: frozenset[str] | None  # None: public

    @property
    def params(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.template)

    @property
    def public(self) -> bool:
        return self.roles is None

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def _pattern_text(pattern: Any) -> str | None:
    """A route template for a path() or re_path() pattern, or None for a catch-all."""
    from django.urls.resolvers import RegexPattern, RoutePattern

    if isinstance(pattern, RoutePattern):
        text = str(pattern._route)
        return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", text)
    if isinstance(pattern, RegexPattern):
        regex = pattern._regex
        if "format" in regex:
            return None
        text = regex.lstrip("^").rstrip("$")
        if text in ("", ".*"):
            return None
        text = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", text)
        if any(ch in text for ch in "()[]*+?\\"):
            return None
        return text
    return None


def _walk(resolver: Any, prefix: str = "") -> list[tuple[str, Any]]:
    from django.urls import URLPattern, URLResolver

    out: list[tuple[str, Any]] = []
    for entry in resolver.url_patterns:
        text = _pattern_text(entry.pattern)
        if text is None:
            if isinstance(entry, URLResolver):
                text = ""
            else:
                continue
        if isinstance(entry, URLResolver):
            out.extend(_walk(entry, prefix + text))
        elif isinstance(entry, URLPattern):
            out.append((prefix + text, entry.callback))
    return out


def roles_table(cls: Any, body: bytes = b"{}") -> dict[str, Any] | None:
    """A view's role table; a view may compute it per request (a dry-run check needs only the
    read roles), so a computed one is asked with a stand-in request carrying `body`."""
    table = getattr(cls, "roles", None)
    if isinstance(table, property):
        from types import SimpleNamespace

        view = cls()
        view.request = SimpleNamespace(
            _request=SimpleNamespace(body=body), query_params={}, method="POST"
        )
        try:
            table = view.roles
        except Exception:
            del view.request
            table = view.roles
    return table


def _roles_for(cls: Any, key_candidates: list[str]) -> frozenset[str] | None:
    table = roles_table(cls)
    if table is None:
        # Not a platform view (e.g. the schema views): public, handled elsewhere.
        return None
    for key in key_candidates:
        if key in table:
            return table[key]
    return _NOBODY


def api_routes() -> list[Route]:
    from django.urls import get_resolver

    routes: list[Route] = []
    for text, callback in _walk(get_resolver()):
        if not text.startswith(PREFIX):
            continue
        template = "/" + text[len(PREFIX) :]
        cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if cls is None:
            continue
        name = f"{cls.__module__}.{cls.__qualname__}"
        actions = getattr(callback, "actions", None)
        if actions:
            for method, action in actions.items():
                if method in ("options", "head"):
                    continue
                routes.append(
                    Route(template, method.upper(), name, _roles_for(cls, [action, method]))
                )
        else:
            for method in getattr(cls, "http_method_names", []):
                if method in ("options", "head", "trace") or not hasattr(cls, method):
                    continue
                routes.append(Route(template, method.upper(), name, _roles_for(cls, [method])))
    return sorted(set(routes), key=lambda r: (r.template, r.method))


def wrong_roles(needed: frozenset[str]) -> list[str]:
    """A role set that holds none of the needed roles (possibly empty)."""
    return sorted(ALL_ROLES - needed)
