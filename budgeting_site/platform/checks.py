"""System checks of the platform layer (`manage.py check`, `check --deploy`)."""

from typing import Any

from django.conf import settings
from django.core import checks
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.module_loading import import_string


@checks.register(checks.Tags.security, deploy=True)
def csrf_protects_the_pages(**_: Any) -> list[checks.CheckMessage]:
    """Stands in for Django's security.W003, silenced in settings: that check looks for
    `CsrfViewMiddleware` by its exact dotted name, and the pages run it as
    `PageCsrfViewMiddleware` (docs/platform.md, The request path). This one accepts the
    subclass and refuses a MIDDLEWARE without any CSRF protection."""
    for path in settings.MIDDLEWARE:
        middleware = import_string(path)
        if isinstance(middleware, type) and issubclass(middleware, CsrfViewMiddleware):
            return []
    return [
        checks.Error(
            "No CSRF middleware in MIDDLEWARE: the admin and the approval pages need "
            "budgeting_site.platform.middleware.PageCsrfViewMiddleware.",
            id="platform.E001",
        )
    ]
