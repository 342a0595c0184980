from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "budgets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from budgeting_site.platform import demo
        from budgets.demo import seed

        demo.register(seed)
