from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from budgeting_site.platform import admin_dashboard, demo
        from budgets import selectors
        from budgets.demo import seed

        demo.register(seed)
        admin_dashboard.register("budget_utilization", selectors.dashboard_budget_utilization)
