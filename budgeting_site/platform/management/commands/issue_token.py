from django.core.management.base import BaseCommand, CommandError

from budgeting_site.platform.auth import issue_jwt
from budgeting_site.platform.models import ROLES


class Command(BaseCommand):
    help = "Print a JWT signed with the configured development secret (HS256)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--roles", required=True, help="comma-separated, e.g. service")
        parser.add_argument("--sub", default=None)
        parser.add_argument("--ttl", type=int, default=3600, help="seconds")

    def handle(self, *args, **options):
        roles = [r.strip() for r in options["roles"].split(",") if r.strip()]
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise CommandError(f"unknown roles: {', '.join(unknown)} (known: {', '.join(ROLES)})")
        if options["ttl"] < 1:
            raise CommandError("--ttl must be at least 1 second")
        sub = options["sub"] or f"cli:{options['tenant']}"
        self.stdout.write(
            issue_jwt(tenant_id=options["tenant"], roles=roles, sub=sub, ttl_seconds=options["ttl"])
        )
