"""Cost routes. The literal paths come before `<record_id>` so that they always win."""

from django.urls import path

from costs.api import views

urlpatterns = [
    path("cost-tracking", views.RecordsView.as_view(), name="costs-root"),
    path("cost-tracking/records", views.RecordsView.as_view(), name="costs-records"),
    path("cost-tracking/reports", views.ReportsView.as_view(), name="costs-reports"),
    path("cost-tracking/allocations", views.AllocationsView.as_view(), name="costs-allocations"),
    path("cost-tracking/anomalies", views.AnomaliesView.as_view(), name="costs-anomalies"),
    path("cost-tracking/record", views.RecordView.as_view(), name="costs-record"),
    path("cost-tracking/record/batch", views.RecordBatchView.as_view(), name="costs-batch"),
    path(
        "cost-tracking/<str:record_id>/reverse",
        views.ReverseView.as_view(),
        name="costs-reverse",
    ),
    path("cost-tracking/<str:record_id>", views.RecordDetailView.as_view(), name="costs-detail"),
]
