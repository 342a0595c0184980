from django.apps import AppConfig


class ReceiptsConfig(AppConfig):
    name = "receipts"
    verbose_name = "Receipts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from budgeting_site.platform import health
        from receipts.keys import check_health, reset_caches

        health.register("signing_key", check_health)
        # `flush` (the test runner between transactional tests) re-emits post_migrate: the
        # key rows may be gone, so the cached active kid must be too.
        post_migrate.connect(reset_caches, dispatch_uid="receipts.reset_key_caches")
