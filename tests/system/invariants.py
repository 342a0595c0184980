"""The reconciliation invariant check run after every fault test (SPEC 4.5).

1. The scheduled reconciliation jobs themselves (`budgets.reconcile`, `quotas.reconcile`), run
   once on demand in the stack's environment as an operator would, must report drift 0 —
   budget spent + reserved equal to their ledgers, quota used equal to its usage history — and
   no `reconciliation_drift` alert may be open.
2. An independent recount from the ledgers (the ORM in the stack's environment, read only):
   - each budget period: spent = the recorded costs counted toward it (net of reversals) +
     expired holds committed at their estimate, reserved = the open holds;
   - each quota: used = the sum of its usage history;
3. Receipts = decisions: every receipt id a decision answered with is readable (rate-limit
   receipts within 5 s), and the tenant has exactly as many receipts of that gate as decisions.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from tests.system.stack import Stack

_RUN_JOBS = r"""
import json
from budgeting_site.celery import app
app.loader.import_default_modules()
out = {}
for name in ("budgets.reconcile", "quotas.reconcile"):
    task = app.tasks.get(name)
    out[name] = None if task is None else task.run()
print("RESULT", json.dumps(out, default=str))
"""

# An independent recount, written against the ledgers' models; fields it cannot find are
# reported as "unknown" (not silently passed).
_RECOUNT = r"""
import json
from decimal import Decimal
from django.apps import apps
from django.db.models import Sum

def model(label):
    try:
        return apps.get_model(label)
    except LookupError:
        return None

out = {"budgets": [], "quotas": [], "notes": []}
Quota, Usage = model("quotas.Quota"), model("quotas.QuotaUsage")
if Quota is None or Usage is None:
    out["notes"].append("quota models not found")
else:
    for q in Quota.objects.filter(tenant_id__in=TENANTS):
        total = Usage.objects.filter(quota_id=q.pk).aggregate(s=Sum("amount"))["s"]
        out["quotas"].append(
            {"quota_id": str(q.pk), "used": str(q.used_amount), "history": str(total or 0)}
        )
Budget, Period, Reservation, HoldLine = (
    model("budgets.Budget"), model("budgets.BudgetPeriod"), model("budgets.Reservation"),
    model("budgets.HoldLine"),
)
CostRecord = model("costs.CostRecord")
if None in (Budget, Period, Reservation, HoldLine, CostRecord):
    out["notes"].append("budget or cost models not found")
else:
    # Tenant-level budgets: every cost record of the tenant counts toward them, so their
    # spending can be recounted from the cost ledger alone (same currency only).
    for period in Period.objects.filter(
        tenant_id__in=TENANTS, budget__allocated_to_type="tenant", budget__deleted_at__isnull=True
    ).select_related("budget"):
        budget = period.budget
        records = CostRecord.objects.filter(
            tenant_id=period.tenant_id, counted=True, currency=budget.currency,
            timestamp__gte=period.period_start, timestamp__lt=period.period_end,
        ).aggregate(s=Sum("cost_amount"))["s"] or Decimal(0)
        lines = HoldLine.objects.filter(period=period).select_related("reservation")
        committed_without_record = Decimal(0)
        expired_at_estimate = Decimal(0)
        open_holds = Decimal(0)
        for line in lines:
            res = line.reservation
            if res.status == "active" and line.active:
                open_holds += line.amount
            elif res.status == "committed" and not res.record_id:
                committed_without_record += res.actual_cost or Decimal(0)
            elif res.status == "expired" and res.expiry_outcome == "committed":
                if not res.late_settled:
                    expired_at_estimate += line.amount
        expected_spent = records + committed_without_record + expired_at_estimate
        out["budgets"].append({
            "budget_id": str(budget.pk), "period_start": period.period_start,
            "spent": str(period.spent_amount), "reserved": str(period.reserved_amount),
            "expected_spent": str(expected_spent), "expected_reserved": str(open_holds),
            "records": str(records), "committed": str(committed_without_record),
            "expired": str(expired_at_estimate),
        })
print("RESULT", json.dumps(out, default=str))
"""


def run_reconciliation_jobs(stack: Stack) -> dict[str, Any]:
    text = stack.python(_RUN_JOBS)
    line = next(x for x in text.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def _drift_of(result: Any) -> list[Any]:
    if result is None:
        return ["job missing"]
    drifted = result.get("drifted")
    if isinstance(drifted, list):
        return drifted
    if isinstance(drifted, int):
        return [f"{drifted} drifted"] if drifted else []
    total = result.get("total_drift")
    return [f"total_drift {total}"] if total not in (None, 0, "0", "0E-10") else []


def recount(stack: Stack, tenants: list[str]) -> dict[str, Any]:
    text = stack.python(f"TENANTS = {tenants!r}\n" + _RECOUNT)
    line = next(x for x in text.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def open_drift_alerts(stack: Stack, tenant: str) -> list[dict[str, Any]]:
    with stack.client(tenant, ["tenant_admin"]) as c:
        r = c.get("/alerts", params={"alert_type": "reconciliation_drift"})
    if r.status_code != 200:
        return [{"error": f"GET /alerts answered {r.status_code}"}]
    return [a for a in r.json().get("alerts", []) if a.get("status") != "resolved"]


def receipts_readable(stack: Stack, tenant: str, receipt_ids: list[str], within: float = 6.0):
    """The receipt ids that are still not readable after `within` seconds."""
    pending = set(receipt_ids)
    deadline = time.monotonic() + within
    with stack.client(tenant, ["auditor"]) as c:
        while pending and time.monotonic() < deadline:
            for rid in list(pending):
                if c.get(f"/receipts/{rid}").status_code == 200:
                    pending.discard(rid)
            if pending:
                time.sleep(0.25)
    return sorted(pending)


def receipt_count(stack: Stack, tenant: str, gate_id: str) -> int:
    with stack.client(tenant, ["auditor"]) as c:
        r = c.get("/receipts", params={"gate_id": gate_id, "page_size": 1})
    r.raise_for_status()
    return int(r.json()["pagination"]["total_count"])


def assert_invariants(
    stack: Stack,
    tenants: list[str],
    decisions: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Raise AssertionError naming every broken invariant; return what was checked."""
    problems: list[str] = []
    jobs = run_reconciliation_jobs(stack)
    for name, result in jobs.items():
        drift = _drift_of(result)
        if drift:
            problems.append(f"{name}: {drift}")
    for tenant in tenants:
        alerts = open_drift_alerts(stack, tenant)
        if alerts:
            problems.append(f"open reconciliation_drift alerts in {tenant}: {alerts[:3]}")
    counts = recount(stack, tenants)
    for q in counts["quotas"]:
        if Decimal(q["used"]) != Decimal(q["history"]):
            problems.append(f"quota {q['quota_id']}: used {q['used']} != history {q['history']}")
    for b in counts["budgets"]:
        if Decimal(b["spent"]) != Decimal(b["expected_spent"]) or Decimal(b["reserved"]) != Decimal(
            b["expected_reserved"]
        ):
            problems.append(f"budget {b['budget_id']} period {b['period_start']}: {b}")
    problems.extend(f"recount: {note}" for note in counts["notes"])
    for tenant_gate, receipt_ids in (decisions or {}).items():
        tenant, gate = tenant_gate.split("|")
        missing = receipts_readable(stack, tenant, receipt_ids)
        if missing:
            problems.append(f"{gate}: {len(missing)} receipts not readable, e.g. {missing[0]}")
        total = receipt_count(stack, tenant, gate)
        if total != len(set(receipt_ids)):
            problems.append(
                f"{gate} in {tenant}: {total} receipts for {len(receipt_ids)} decisions"
            )
    assert not problems, "reconciliation invariants broken:\n" + "\n".join(problems)
    return {"jobs": jobs, "recount": counts}
