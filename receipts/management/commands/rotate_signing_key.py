from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from receipts.services import rotate_signing_key, system_actor


class Command(BaseCommand):
    help = "Make a new receipt signing key active; the old one is retired and keeps verifying."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            row = rotate_signing_key(actor=system_actor("manage.rotate_signing_key"))
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"active signing key: {row.kid}")
