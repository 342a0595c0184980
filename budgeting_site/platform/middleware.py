"""Request-level middleware of the platform layer."""

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from budgeting_site.platform.context import correlation_id_var, new_correlation_id
from budgeting_site.platform.errors import (
    DomainError,
    PayloadTooLarge,
    error_json_response,
    to_domain_error,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/budget/v1/"


class CorrelationIdMiddleware:
    """Takes X-Correlation-ID from the request or makes one; echoes it on every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        correlation_id = new_correlation_id(request.headers.get("X-Correlation-ID"))
        token = correlation_id_var.set(correlation_id)
        request.correlation_id = correlation_id
        try:
            response = self.get_response(request)
        finally:
            correlation_id_var.reset(token)
        response["X-Correlation-ID"] = correlation_id
        return response


class BodySizeLimitMiddleware:
    """Bodies over 10 MB are refused before anything reads them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.MAX_BODY_BYTES:
                return error_json_response(PayloadTooLarge("The request body is over 10 MB"))
        return self.get_response(request)


class OutermostErrorMiddleware:
    """The last line: any exception that escapes a view under the API prefix becomes the flat
    500 body (its traceback logged), never Django's HTML page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        known = to_domain_error(exception)
        if known is not None:
            if known.status >= 500:
                logger.warning("request.dependency_failed", exc_info=exception)
            return error_json_response(known)
        logger.exception("request.unhandled_exception", exc_info=exception)
        return error_json_response(DomainError("Internal error"))


# --- the pages' middleware, kept off the API paths ----------------------------------------------


class PagesOnly:
    """Runs the middleware it is mixed into only outside `settings.API_PATH_PREFIXES`.

    The API authenticates every request by bearer token or API key and uses neither the
    session, nor CSRF cookies (its views are CSRF-exempt), nor messages, nor the session's
    user (DRF sets `request.user` from the token); the admin and the approval pages, which do,
    run the wrapped middleware unchanged.
    """

    get_response: Callable[[HttpRequest], HttpResponse]

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(settings.API_PATH_PREFIXES):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class PageSessionMiddleware(PagesOnly, SessionMiddleware):
    pass


class PageAuthenticationMiddleware(PagesOnly, AuthenticationMiddleware):
    pass


class PageMessageMiddleware(PagesOnly, MessageMiddleware):
    pass


class PageCsrfViewMiddleware(PagesOnly, CsrfViewMiddleware):
    def process_view(
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponse | None:
        # The handler calls process_view of every middleware: skip it where process_request
        # did not run (it reads the CSRF cookie that process_view compares).
        if request.path.startswith(settings.API_PATH_PREFIXES):
            return None
        return super().process_view(request, callback, callback_args, callback_kwargs)
