"""The managers' approval pages (SPEC 8): sign in, pending requests with their context,
approve or reject with a comment, history.

A manager is a user whose tenant membership holds an approving role (financial_controller;
tenant_admin too when APPROVALS_ALLOW_TENANT_ADMIN). The pages act as `user:<username>` with
the roles of the membership of the request's tenant, and call the same services as the API:
the requester can never approve their own request, whatever the page shows.
"""

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from approvals import selectors, services
from approvals.models import ApprovalRequest, Status
from approvals.pages.context import context_for
from approvals.pages.forms import ApproveForm, DecisionForm
from budgeting_site.platform import clock
from budgeting_site.platform.admin_scoping import page_principal, tenants_with
from budgeting_site.platform.admin_throttle import ThrottledAuthenticationForm
from budgeting_site.platform.errors import DomainError

PAGE_SIZE = 50
DECIDED = [Status.APPROVED, Status.REJECTED, Status.CONSUMED, Status.EXPIRED]


class LoginView(auth_views.LoginView):
    template_name = "approvals/login.html"
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        return reverse("approval_pages:pending")

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if getattr(form, "throttled", False):
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after_seconds)
        return response


class LogoutView(auth_views.LogoutView):
    next_page = "approval_pages:login"


def manager_tenants(request: HttpRequest) -> list[str]:
    """The tenants whose requests this user may decide: memberships only (a superuser
    without a membership manages nothing here; the admin is theirs)."""
    return tenants_with(request, services.approver_roles())


def _no_role(request: HttpRequest) -> HttpResponse:
    return render(request, "approvals/no_role.html", status=403)


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "approvals/not_found.html", status=404)


def _across(tenants: list[str], status: list[str]) -> QuerySet[ApprovalRequest]:
    """The manager's requests in `status`, across their tenants, via the tenant-scoped
    selector (one query: the per-tenant querysets are OR-ed)."""
    combined: QuerySet[ApprovalRequest] | None = None
    for tenant_id in tenants:
        one = selectors.list_approvals(tenant_id=tenant_id).filter(status__in=status)
        combined = one if combined is None else combined | one
    assert combined is not None
    return combined


def _find(request: HttpRequest, approval_id: str) -> ApprovalRequest | None:
    """The request, if it belongs to one of the manager's tenants (otherwise: not found,
    never forbidden, so ids cannot be probed)."""
    try:
        parsed = uuid.UUID(str(approval_id))
    except ValueError:
        return None
    for tenant_id in manager_tenants(request):
        found = selectors.list_approvals(tenant_id=tenant_id).filter(pk=parsed).first()
        if found is not None:
            return found
    return None


def _principal_name(request: HttpRequest) -> str:
    return f"user:{request.user.get_username()}"


@require_GET
@login_required
def pending(request: HttpRequest) -> HttpResponse:
    tenants = manager_tenants(request)
    if not tenants:
        return _no_role(request)
    now = clock.now()
    requests = list(
        _across(tenants, [Status.PENDING])
        .filter(expires_at__gt=now)
        .order_by("-created_at")[:PAGE_SIZE]
    )
    me = _principal_name(request)
    rows = [
        {"approval": a, "context": context_for(a), "own": a.requested_by == me} for a in requests
    ]
    return render(
        request,
        "approvals/pending.html",
        {"rows": rows, "tenants": tenants, "nav": "pending", "now": now},
    )


@require_GET
@login_required
def history(request: HttpRequest) -> HttpResponse:
    tenants = manager_tenants(request)
    if not tenants:
        return _no_role(request)
    decided = _across(tenants, DECIDED).order_by("-decided_at", "-created_at", "-id")
    page = Paginator(decided, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "approvals/history.html",
        {"page": page, "tenants": tenants, "nav": "history"},
    )


def _detail_response(
    request: HttpRequest,
    approval: ApprovalRequest,
    *,
    approve_form: ApproveForm | None = None,
    reject_form: DecisionForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    own = approval.requested_by == _principal_name(request)
    decidable = approval.status == Status.PENDING and approval.expires_at > clock.now()
    return render(
        request,
        "approvals/detail.html",
        {
            "approval": approval,
            "context": context_for(approval),
            "own": own,
            "decidable": decidable and not own,
            "approve_form": approve_form or ApproveForm(),
            "reject_form": reject_form or DecisionForm(),
            "error": error,
            "nav": "pending" if approval.status == Status.PENDING else "history",
        },
        status=status,
    )


@require_GET
@login_required
def detail(request: HttpRequest, approval_id: str) -> HttpResponse:
    if not manager_tenants(request):
        return _no_role(request)
    approval = _find(request, approval_id)
    if approval is None:
        return _not_found(request)
    return _detail_response(request, approval)


def _decide(request: HttpRequest, approval_id: str, *, approving: bool) -> HttpResponse:
    if not manager_tenants(request):
        return _no_role(request)
    approval = _find(request, approval_id)
    if approval is None:
        return _not_found(request)
    form = ApproveForm(request.POST) if approving else DecisionForm(request.POST)
    forms = {"approve_form": form} if approving else {"reject_form": form}
    if not form.is_valid():
        return _detail_response(request, approval, **forms, status=400)
    principal = page_principal(request, approval.tenant_id, superuser_holds_all=False)
    try:
        if approving:
            decided = services.approve(
                tenant_id=approval.tenant_id,
                approval_id=approval.pk,
                approver=principal,
                comment=form.cleaned_data["comment"],
                approved_amount=form.cleaned_data.get("approved_amount"),
            )
        else:
            decided = services.reject(
                tenant_id=approval.tenant_id,
                approval_id=approval.pk,
                approver=principal,
                comment=form.cleaned_data["comment"],
            )
    except DomainError as exc:
        approval.refresh_from_db()
        return _detail_response(request, approval, **forms, error=exc.message, status=exc.status)
    verb = "Approved" if approving else "Rejected"
    messages.success(request, f"{verb} request {decided.pk}.")
    return redirect("approval_pages:detail", approval_id=decided.pk)


@require_POST
@login_required
def approve(request: HttpRequest, approval_id: str) -> HttpResponse:
    return _decide(request, approval_id, approving=True)


@require_POST
@login_required
def reject(request: HttpRequest, approval_id: str) -> HttpResponse:
    return _decide(request, approval_id, approving=False)
