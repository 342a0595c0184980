from django.urls import path

from events.api.views import AlertViewSet, SubscriptionViewSet

subscriptions = SubscriptionViewSet.as_view({"get": "list", "post": "create"})
subscription = SubscriptionViewSet.as_view(
    {"get": "retrieve", "put": "partial_update", "patch": "partial_update", "delete": "destroy"}
)
deliveries = SubscriptionViewSet.as_view({"get": "deliveries"})
alerts = AlertViewSet.as_view({"get": "list"})
alert = AlertViewSet.as_view({"get": "retrieve"})
acknowledge = AlertViewSet.as_view({"post": "acknowledge"})
resolve = AlertViewSet.as_view({"post": "resolve"})

urlpatterns = [
    path("event-subscriptions", subscriptions, name="subscription-list"),
    path("event-subscriptions/<str:pk>", subscription, name="subscription-detail"),
    path("event-subscriptions/<str:pk>/deliveries", deliveries, name="subscription-deliveries"),
    path("alerts", alerts, name="alert-list"),
    path("alerts/<str:pk>", alert, name="alert-detail"),
    path("alerts/<str:pk>/acknowledge", acknowledge, name="alert-acknowledge"),
    path("alerts/<str:pk>/resolve", resolve, name="alert-resolve"),
]
