from django.core.management.base import BaseCommand

from budgeting_site.platform.auth import issue_jwt
from budgeting_site.platform.management.commands.seed_demo import DEMO_PASSWORD, DEMO_TENANT

ROLES = ["service", "tenant_admin", "financial_controller", "auditor"]


class Command(BaseCommand):
    help = "Print the demo admin login and a ready-to-use API token."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://localhost:8000")

    def handle(self, *args, **options):
        base = options["base_url"]
        token = issue_jwt(
            tenant_id=DEMO_TENANT, roles=ROLES, sub="demo-service", ttl_seconds=7 * 24 * 3600
        )
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "=" * 72,
                    f"  Admin:     {base}/admin/    user: admin   password: {DEMO_PASSWORD}",
                    f"  Approvals: {base}/approvals/   (user: finance, same password)",
                    f"  API docs:  {base}/budget/v1/docs/",
                    f"  Health:    {base}/budget/v1/health",
                    f"  API token (tenant '{DEMO_TENANT}', roles {','.join(ROLES)}, 7 days):",
                    f"  export TOKEN={token}",
                    f'  curl -H "Authorization: Bearer $TOKEN" {base}/budget/v1/budgets',
                    "=" * 72,
                    "",
                ]
            )
        )
