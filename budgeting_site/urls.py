from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from budgeting_site.platform.api import HealthView, MetricsView, api_error_handler, api_not_found


class PublicSchemaView(SpectacularAPIView):
    authentication_classes = []
    permission_classes = []


class PublicSwaggerView(SpectacularSwaggerView):
    authentication_classes = []
    permission_classes = []


# The apps' endpoints first: they are what clients call per operation (settings.py).
api_patterns = [
    *[path("", include(module)) for module in settings.API_URL_MODULES],
    path("health", HealthView.as_view(), name="health"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("schema/", PublicSchemaView.as_view(), name="schema"),
    path("docs/", PublicSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    re_path(r"^.*$", api_not_found),
]

urlpatterns = [
    path("budget/v1/", include(api_patterns)),
    path("admin/", admin.site.urls),
    *[path(prefix, include(module)) for prefix, module in settings.PAGE_URL_MODULES],
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]

handler400 = api_error_handler(400)
handler403 = api_error_handler(403)
handler404 = api_error_handler(404)
handler500 = api_error_handler(500)
