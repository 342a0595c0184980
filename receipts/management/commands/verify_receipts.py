"""Check every stored receipt: its signature over its canonical text, its snapshot hash, and
that its indexed columns agree with the signed text. Streams the table in key order (keyset
batches), so it runs in constant memory on any size, and shows progress."""

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from receipts.models import Receipt
from receipts.services import verify_stored


class Command(BaseCommand):
    help = "Verify the signature of every stored receipt; print counts of valid and invalid."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--tenant", help="only this tenant's receipts")
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument(
            "--show-invalid", type=int, default=20, help="list at most this many invalid ids"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        qs = Receipt.objects.all()
        if options["tenant"]:
            qs = qs.filter(tenant_id=options["tenant"])
        total = qs.count()
        batch_size = max(1, options["batch_size"])
        valid = invalid = 0
        reasons: dict[str, int] = {}
        shown = 0
        last_pk = None
        started = time.monotonic()
        last_report = 0.0
        interactive = hasattr(self.stdout, "isatty") and self.stdout.isatty()
        while True:
            page = qs.order_by("pk")
            if last_pk is not None:
                page = page.filter(pk__gt=last_pk)
            rows = list(
                page.only(
                    "pk",
                    "tenant_id",
                    "gate_id",
                    "decision_status",
                    "timestamp_utc",
                    "kid",
                    "canonical",
                    "signature",
                )[:batch_size]
            )
            if not rows:
                break
            for receipt in rows:
                verdict = verify_stored(receipt)
                if verdict.valid:
                    valid += 1
                else:
                    invalid += 1
                    reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
                    if shown < options["show_invalid"]:
                        shown += 1
                        self.stderr.write(f"invalid {receipt.pk}: {verdict.reason}")
            last_pk = rows[-1].pk
            done = valid + invalid
            now = time.monotonic()
            if now - last_report >= 1.0 or done >= total:
                last_report = now
                rate = done / max(now - started, 1e-6)
                line = (
                    f"verified {done}/{total} ({100 * done / max(total, 1):.1f}%), "
                    f"{rate:.0f}/s, invalid {invalid}"
                )
                if interactive:
                    self.stdout.write("\r" + line, ending="")
                    self.stdout.flush()
                else:
                    self.stdout.write(line)
        if interactive:
            self.stdout.write("")
        self.stdout.write(f"valid: {valid}")
        self.stdout.write(f"invalid: {invalid}")
        for reason, count in sorted(reasons.items()):
            self.stdout.write(f"  {reason}: {count}")
        sys.stdout.flush()
        if invalid:
            raise CommandError(f"{invalid} receipt(s) failed verification")
