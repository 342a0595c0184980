"""Print the secret that signs deliveries to NOTIFICATION_ENGINE_URL, for the engine's side."""

from typing import Any

from django.core.management.base import BaseCommand

from events.crypto import notification_engine_secret


class Command(BaseCommand):
    help = (
        "Print the Standard Webhooks secret (whsec_...) that signs every delivery to "
        "NOTIFICATION_ENGINE_URL: NOTIFICATION_ENGINE_SECRET when set, else the one derived "
        "from DJANGO_SECRET_KEY. Configure the notification engine to verify with it."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(notification_engine_secret())
