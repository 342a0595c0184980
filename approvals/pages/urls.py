"""The managers' approval pages, mounted at /approvals/ (settings.PAGE_URL_MODULES)."""

from django.urls import path

from approvals.pages import views

app_name = "approval_pages"

urlpatterns = [
    path("", views.pending, name="pending"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("history/", views.history, name="history"),
    path("<str:approval_id>/", views.detail, name="detail"),
    path("<str:approval_id>/approve", views.approve, name="approve"),
    path("<str:approval_id>/reject", views.reject, name="reject"),
]
