"""The admin app with the project's site (`admin_site.PlatformAdminSite`) as `admin.site`.

Kept apart from `admin_site` because `INSTALLED_APPS` modules are imported before the models
are ready; the site itself is built lazily, on first use of `admin.site`.
"""

from django.contrib.admin.apps import AdminConfig


class PlatformAdminConfig(AdminConfig):
    default_site = "budgeting_site.platform.admin_site.PlatformAdminSite"
