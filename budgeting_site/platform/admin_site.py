"""The project's admin site: Django's, plus throttled sign-in and the dashboard page.

Installed by naming `budgeting_site.platform.admin_apps.PlatformAdminConfig` in
`INSTALLED_APPS` in place of `django.contrib.admin`; `admin.site` (and every
`@admin.register`) is then this site.
"""

from datetime import datetime
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from budgeting_site.platform import clock
from budgeting_site.platform.admin_dashboard import PANELS, build_panel, charts_of
from budgeting_site.platform.admin_scoping import is_superuser, tenant_roles
from budgeting_site.platform.admin_throttle import ThrottledAdminAuthenticationForm


def _mark_throttled(response: HttpResponse) -> HttpResponse:
    form = (getattr(response, "context_data", None) or {}).get("form")
    if form is not None and getattr(form, "throttled", False):
        response.status_code = 429
        response["Retry-After"] = str(form.retry_after_seconds)
    return response


class PlatformAdminSite(admin.AdminSite):
    site_header = "Budgeting service"
    site_title = "Budgeting service admin"
    index_title = "Operations"
    login_form = ThrottledAdminAuthenticationForm

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        return _mark_throttled(super().login(request, extra_context))

    def get_urls(self):
        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        now: datetime = clock.now()
        memberships = tenant_roles(request)
        choices = None if is_superuser(request) else sorted(memberships)
        selected = request.GET.get("tenant") or ""
        if choices is not None and selected and selected not in choices:
            selected = ""  # not the user's tenant: ignored, never shown
        panels = []
        for key, spec in PANELS.items():
            if is_superuser(request):
                scope = [selected] if selected else None
            else:
                scope = [t for t, held in memberships.items() if held & spec.roles]
                if selected:
                    scope = [t for t in scope if t == selected]
            panel = build_panel(key, tenant_ids=scope, now=now)
            panels.append({**panel, "charts": charts_of(panel)})
        context = {
            **self.each_context(request),
            "title": "Dashboard",
            "subtitle": None,
            "panels": panels,
            "tenant_choices": choices,
            "selected_tenant": selected,
            "generated_at": now,
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/dashboard.html", context)
