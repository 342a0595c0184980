from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Events, subscriptions and alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from budgeting_site.platform import admin_dashboard, demo
        from events import selectors
        from events.demo import seed

        admin_dashboard.register("open_alerts", selectors.dashboard_open_alerts)
        demo.register(seed)
