from django.urls import path

from quotas.api import views

urlpatterns = [
    path("quotas", views.QuotaListView.as_view(), name="quota-list"),
    path("quotas/allocate", views.AllocateView.as_view(), name="quota-allocate"),
    path("quotas/allocate/batch", views.AllocateBatchView.as_view(), name="quota-allocate-batch"),
    path("quotas/consume", views.ConsumeView.as_view(), name="quota-consume"),
    path("quotas/check", views.CheckView.as_view(), name="quota-check"),
    path("quotas/<str:quota_id>", views.QuotaDetailView.as_view(), name="quota-detail"),
]
