import logging

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from budgeting_site.platform import demo
from budgeting_site.platform.services import set_membership

logger = logging.getLogger(__name__)

DEMO_TENANT = "demo"
DEMO_USERS = (
    # username, roles in the demo tenant, is_superuser
    ("admin", ["tenant_admin", "financial_controller", "auditor"], True),
    ("finance", ["financial_controller", "auditor"], False),
    ("ops", ["tenant_admin", "system_architect"], False),
)
DEMO_PASSWORD = "demo-password-change-me"


class Command(BaseCommand):
    help = "Load a small, realistic demo tenant (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", default=DEMO_TENANT)

    def handle(self, *args, **options):
        tenant_id = options["tenant"]
        user_model = get_user_model()
        with transaction.atomic():
            for username, roles, is_superuser in DEMO_USERS:
                user, created = user_model.objects.get_or_create(
                    username=username,
                    defaults={"is_staff": True, "is_superuser": is_superuser},
                )
                if created:
                    user.set_password(DEMO_PASSWORD)
                    user.save()
                set_membership(user=user, tenant_id=tenant_id, roles=roles)
        for seeder in demo.seeders():
            seeder(tenant_id)
            self.stdout.write(f"seeded {seeder.__module__}")
        self.stdout.write(self.style.SUCCESS(f"demo tenant '{tenant_id}' is ready"))
