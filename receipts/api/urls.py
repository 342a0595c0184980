from django.urls import path

from receipts.api import views

urlpatterns = [
    path("receipts", views.ReceiptListView.as_view(), name="receipt-list"),
    path("receipts/keys", views.ReceiptKeysView.as_view(), name="receipt-keys"),
    path("receipts/verify", views.ReceiptVerifyView.as_view(), name="receipt-verify"),
    path("receipts/<str:receipt_id>", views.ReceiptDetailView.as_view(), name="receipt-detail"),
]
