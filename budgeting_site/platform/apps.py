from django.apps import AppConfig


class PlatformConfig(AppConfig):
    name = "budgeting_site.platform"
    label = "platform"
    verbose_name = "Platform: access and audit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from budgeting_site.platform import checks, health, metrics, schema  # noqa: F401 - registers

        health.register_builtin_checks()
