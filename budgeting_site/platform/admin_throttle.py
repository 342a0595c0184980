"""Sign-in throttling against password guessing, for the admin and the approval pages (SPEC 8).

Failed sign-ins are counted per username and per client address over
`LOGIN_THROTTLE_WINDOW_SECONDS`; once either count reaches `LOGIN_THROTTLE_ATTEMPTS`, further
attempts are refused without checking the password until old failures leave the window.

The counts live in the platform audit log (`AuditLogEntry`, action `login_failed`), not in the
cache: they hold across processes and workers, on the embedded default (SQLite) as on
PostgreSQL, survive a Redis outage (the Redis cache swallows errors, which would silently turn
the throttle off), and every failed sign-in is audited as a side effect.

Concurrency: the attempt row is written *before* it is counted, in autocommit, so of N
parallel guesses each one sees every attempt committed before its own count and at most
`LOGIN_THROTTLE_ATTEMPTS` reach the password check. A successful sign-in turns its own row
into `login_succeeded`, which also restarts the username's count (the client address's count
does not restart, or one valid account would unlock guessing at others). See
docs/admin-login-throttle.md.
"""

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest

from budgeting_site.platform import clock
from budgeting_site.platform.context import current_correlation_id
from budgeting_site.platform.models import AuditLogEntry

logger = logging.getLogger(__name__)

FAILED = "login_failed"
SUCCEEDED = "login_succeeded"
THROTTLED = "login_throttled"
THROTTLED_CODE = "throttled"


def _limit() -> int:
    return max(1, int(settings.LOGIN_THROTTLE_ATTEMPTS))


def _window() -> timedelta:
    return timedelta(seconds=max(1, int(settings.LOGIN_THROTTLE_WINDOW_SECONDS)))


def client_address(request: HttpRequest | None) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is chosen by the client and would let a guesser pick a
    # fresh address per attempt. Behind a proxy, have the proxy set REMOTE_ADDR.
    if request is None:
        return ""
    return str(request.META.get("REMOTE_ADDR") or "")[:128]


def normalise_username(username: str | None) -> str:
    return (username or "").strip().lower()[:150]


@dataclass(frozen=True)
class Attempt:
    row_id: int
    allowed: bool
    retry_after_seconds: int


def _failure_times(username: str, address: str, since, exclude_id: int):
    """The times of the counted failures for the username and for the address, oldest first.
    Few rows: refused attempts are not failures, so a key stops growing at the limit."""
    recent = AuditLogEntry.objects.filter(action=FAILED, at__gte=since).exclude(pk=exclude_id)
    last_success = (
        AuditLogEntry.objects.filter(action=SUCCEEDED, principal=f"user:{username}", at__gte=since)
        .order_by("-at")
        .values_list("at", flat=True)
        .first()
    )
    by_user = recent.filter(principal=f"user:{username}")
    if last_success is not None:
        by_user = by_user.filter(at__gt=last_success)
    user_times = list(by_user.order_by("at").values_list("at", flat=True))
    if address:
        by_address = recent.filter(details__client_address=address)
        address_times = list(by_address.order_by("at").values_list("at", flat=True))
    else:
        address_times = []
    return user_times, address_times


def _frees_at(times: list, limit: int):
    """When the count of `times` drops below `limit` again (None: it is below already)."""
    if len(times) < limit:
        return None
    return times[len(times) - limit] + _window()


def begin_attempt(request: HttpRequest | None, username: str | None) -> Attempt:
    """Record a sign-in attempt and decide whether it may check the password."""
    name = normalise_username(username)
    address = client_address(request)
    now = clock.now()
    row = AuditLogEntry.objects.create(
        at=now,
        action=FAILED,  # until proven otherwise: an attempt that crashes mid-check still counts
        principal=f"user:{name}",
        tenant_id="",
        path=(request.path if request is not None else "")[:512],
        method=(request.method if request is not None else "")[:8],
        correlation_id=current_correlation_id() or "",
        details={"client_address": address},
    )
    limit = _limit()
    user_times, address_times = _failure_times(name, address, now - _window(), row.pk)
    frees = [t for t in (_frees_at(user_times, limit), _frees_at(address_times, limit)) if t]
    if not frees:
        return Attempt(row_id=row.pk, allowed=True, retry_after_seconds=0)
    # Refused without a password check: not a guess, so it does not extend the lock-out.
    AuditLogEntry.objects.filter(pk=row.pk).update(action=THROTTLED)
    retry = max(1, math.ceil((max(frees) - now).total_seconds()))
    logger.warning(
        "auth.login_throttled",
        extra={"username": name, "client_address": address, "retry_after": retry},
    )
    return Attempt(row_id=row.pk, allowed=False, retry_after_seconds=retry)


def finish_attempt(attempt: Attempt, *, succeeded: bool) -> None:
    if succeeded:
        AuditLogEntry.objects.filter(pk=attempt.row_id).update(action=SUCCEEDED)


THROTTLED_MESSAGE = "Too many failed sign-in attempts. Try again in %(minutes)s minute(s)."


class ThrottledLoginMixin:
    """For an `AuthenticationForm`: refuse when throttled, count every failure."""

    throttled = False
    retry_after_seconds = 0

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()  # a missing field: the form says so, no attempt made
        attempt = begin_attempt(self.request, username)
        if not attempt.allowed:
            self.throttled = True
            self.retry_after_seconds = attempt.retry_after_seconds
            raise forms.ValidationError(
                THROTTLED_MESSAGE,
                code=THROTTLED_CODE,
                params={"minutes": max(1, math.ceil(attempt.retry_after_seconds / 60))},
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            finish_attempt(attempt, succeeded=False)
            raise
        finish_attempt(attempt, succeeded=True)
        return cleaned


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    """The approval pages' sign-in form."""


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin's sign-in form (staff only, with Django's admin messages)."""
