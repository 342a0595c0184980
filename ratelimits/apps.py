from django.apps import AppConfig


class RatelimitsConfig(AppConfig):
    name = "ratelimits"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from approvals.services import register_on_approved, register_on_closed
        from budgeting_site.platform import admin_dashboard, demo, health
        from ratelimits import selectors, services
        from ratelimits.demo import seed

        register_on_approved("emergency_capacity", services.emergency_capacity_approved)
        register_on_closed("emergency_capacity", services.emergency_capacity_closed)
        health.register("ratelimit_store", _store_health)
        admin_dashboard.register("ratelimit_denials", selectors.dashboard_denials_per_hour)
        demo.register(seed)


def _store_health() -> None:
    from ratelimits import runtime

    store = runtime.policy_store()
    store.get_epoch("_health")
