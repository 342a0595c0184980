from django.urls import path

from ratelimits.api.views import CheckView, PolicyViewSet

policies = PolicyViewSet.as_view({"get": "list", "post": "create"})
policy = PolicyViewSet.as_view({"get": "retrieve", "put": "update", "delete": "destroy"})
emergency = PolicyViewSet.as_view({"post": "emergency_capacity"})

urlpatterns = [
    path("rate-limits", policies, name="ratelimit-policy-list"),
    path("rate-limits/check", CheckView.as_view(), name="ratelimit-check"),
    path("rate-limits/<str:pk>", policy, name="ratelimit-policy-detail"),
    path("rate-limits/<str:pk>/emergency-capacity", emergency, name="ratelimit-emergency-capacity"),
]
