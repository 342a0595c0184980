from django.apps import AppConfig


class CostsConfig(AppConfig):
    name = "costs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from budgeting_site.platform import admin_dashboard, demo
        from costs import selectors
        from costs.demo import seed

        demo.register(seed)
        admin_dashboard.register("cost_per_day", selectors.dashboard_cost_per_day)
        admin_dashboard.register("top_spenders", selectors.dashboard_top_spenders)
