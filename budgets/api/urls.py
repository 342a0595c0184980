from django.urls import path

from budgets.api import views

urlpatterns = [
    path("budgets", views.BudgetListView.as_view(), name="budget-list"),
    path("budgets/check", views.BudgetCheckView.as_view(), name="budget-check"),
    path("budgets/check/batch", views.BudgetCheckBatchView.as_view(), name="budget-check-batch"),
    path(
        "budgets/reservations/<str:reservation_id>",
        views.ReservationDetailView.as_view(),
        name="budget-reservation",
    ),
    path(
        "budgets/reservations/<str:reservation_id>/commit",
        views.ReservationCommitView.as_view(),
        name="budget-reservation-commit",
    ),
    path(
        "budgets/reservations/<str:reservation_id>/release",
        views.ReservationReleaseView.as_view(),
        name="budget-reservation-release",
    ),
    path(
        "budgets/reservations/<str:reservation_id>/extend",
        views.ReservationExtendView.as_view(),
        name="budget-reservation-extend",
    ),
    path("budgets/<str:budget_id>", views.BudgetDetailView.as_view(), name="budget-detail"),
    path(
        "budgets/<str:budget_id>/utilization",
        views.BudgetUtilizationView.as_view(),
        name="budget-utilization",
    ),
]
