from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from budgeting_site.platform.jobs import InProcessScheduler


class Command(BaseCommand):
    help = "Serve the API, admin and approval pages; with no broker, also run the jobs here."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args, **options):
        if settings.JOBS_IN_PROCESS:
            InProcessScheduler().start()
            self.stdout.write("scheduled jobs: running in this process (no broker configured)")
        else:
            self.stdout.write("scheduled jobs: run `celery -A budgeting_site worker --beat`")
        call_command("runserver", options["addrport"], use_reloader=False, use_threading=True)
