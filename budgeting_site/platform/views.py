"""Base views every API endpoint derives from, so that no app can forget a rule.

Order of checks (SPEC 1.3): 401 → 429 → 403 (roles, then a foreign tenant_id) → the handler
(404, 400/413/415, 409/422). Idempotency (SPEC 1.4) wraps the handler of every unsafe method.
"""

import logging
import uuid
from datetime import timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpResponseBase
from django.utils.module_loading import import_string
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.views import APIView

from budgeting_site.platform import idempotency
from budgeting_site.platform.errors import MethodNotAllowed, Unauthorized, ValidationFailed
from budgeting_site.platform.permissions import required_roles
from budgeting_site.platform.principal import Principal
from budgeting_site.platform.tenancy import requested_tenant_ids, resolve_tenant_id

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def api_rate_limiter() -> Any:
    """The function that enforces this API's own limits (SPEC 1.5), named in settings.

    It is called as `limiter(request, principal, limit_class)` and returns the headers to add
    to the response, or raises `RateLimited`.
    """
    return import_string(settings.API_RATE_LIMITER)


def parse_uuid(value: Any, name: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValidationFailed(
            f"{name} is not a valid UUID", details={name: ["not a valid UUID"]}
        ) from exc


class ApiMixin:
    """The platform's request pipeline, mixed into APIView and the viewsets."""

    #: action name (viewsets) or lower-case method → roles; None means public.
    roles: dict[str, frozenset[str] | None] = {}
    #: the bucket of SPEC 1.5 this view counts against.
    rate_limit_class = "default"
    #: set by views that enforce this API's own limit inside their own store round trip.
    api_limit_in_handler = False
    idempotency_ttl: timedelta = idempotency.DEFAULT_TTL
    #: False for views whose body is a document that names a tenant without acting in it
    #: (a receipt sent to be verified).
    body_names_acting_tenant = True

    request: Request

    @property
    def principal(self) -> Principal:
        return self.request.user

    def tenant_id(self) -> str:
        """The caller's tenant, after `initial` has refused any foreign tenant_id."""
        return self.request.user.tenant_id

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # Read the raw body before DRF parses it: idempotency fingerprints the exact request.
        if request.method in idempotency.METHODS:
            _ = request.body
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)  # type: ignore[attr-defined]
        self.request = request
        self.headers = self.default_response_headers  # type: ignore[attr-defined]
        self._idempotency_claim: idempotency.Claim | None = None
        self._extra_headers: dict[str, str] = {}
        try:
            replay = self.initial(request, *args, **kwargs)
            if replay is not None:
                response = replay
            else:
                method = request.method.lower()
                handler: Any
                if method in self.http_method_names:  # type: ignore[attr-defined]
                    handler = getattr(self, method, self.http_method_not_allowed)  # type: ignore[attr-defined]
                else:
                    handler = self.http_method_not_allowed  # type: ignore[attr-defined]
                if self._idempotency_claim is None:
                    response = handler(request, *args, **kwargs)
                else:
                    response = self._run_recorded(handler, request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)  # type: ignore[attr-defined]
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase | None:
        self.format_kwarg = self.get_format_suffix(**kwargs)  # type: ignore[attr-defined]
        neg = self.perform_content_negotiation(request)  # type: ignore[attr-defined]
        request.accepted_renderer, request.accepted_media_type = neg
        if not hasattr(self, request.method.lower()):
            raise MethodNotAllowed(f"Method {request.method} is not allowed here")
        needed = required_roles(self, request)
        if needed is None:
            return None
        user = request.user
        if user is None:
            raise Unauthorized()
        if settings.API_RATE_LIMITS is not None and not self.api_limit_in_handler:
            self._extra_headers.update(api_rate_limiter()(request, user, self.rate_limit_class))
        self.check_permissions(request)  # type: ignore[attr-defined]
        for given in requested_tenant_ids(request, body=self.body_names_acting_tenant):
            resolve_tenant_id(request, given)
        return self._begin_idempotency(request)

    def _begin_idempotency(self, request: Request) -> HttpResponseBase | None:
        if request.method not in idempotency.METHODS:
            return None
        key = idempotency.key_from(request.META)
        if key is None:
            return None
        django_request = request._request
        outcome = idempotency.begin(
            tenant_id=request.user.tenant_id,
            key=key,
            print_=idempotency.fingerprint(
                request.method,
                request.path,
                django_request.META.get("QUERY_STRING", ""),
                django_request.body,
            ),
            ttl=self.idempotency_ttl,
        )
        if isinstance(outcome, idempotency.Claim):
            self._idempotency_claim = outcome
            return None
        return outcome

    def _run_recorded(
        self, handler: Any, request: Request, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        """Run the handler and store its answer under the Idempotency-Key in one transaction:
        an effect never commits without the answer its retry will be replayed (a connection
        lost in between rolls both back). The services' own transactions become savepoints."""
        with transaction.atomic():
            response = handler(request, *args, **kwargs)
            return self.finalize_response(request, response, *args, **kwargs)

    def finalize_response(
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        for key, value in self._extra_headers.items():
            if not response.has_header(key):
                response[key] = value
        if self._idempotency_claim is not None:
            if hasattr(response, "render") and not getattr(response, "is_rendered", True):
                response.render()
            idempotency.finish(self._idempotency_claim, response)
            self._idempotency_claim = None
        return response


class ApiView(ApiMixin, APIView):
    """An action endpoint: declare `roles = {"post": ...}` and write the handler."""


class TenantViewSet(ApiMixin, viewsets.GenericViewSet):
    """A resource scoped to the caller's tenant: a by-id row of another tenant is a 404.

    Subclasses define `roles` per action and call their app's selectors and services.
    """

    lookup_field = "pk"
    lookup_value_regex = "[^/]+"

    def object_id(self) -> uuid.UUID:
        return parse_uuid(self.kwargs[self.lookup_field], self.lookup_url_kwarg or "id")
