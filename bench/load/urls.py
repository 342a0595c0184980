from django.urls import include, path

from bench.load.views import BareView, MinimalCheckView
from budgeting_site.urls import handler400, handler403, handler404, handler500  # noqa: F401

urlpatterns = [
    path("bench/bare", BareView.as_view()),
    path("bench/minimal", MinimalCheckView.as_view()),
    path("", include("budgeting_site.urls")),
]
