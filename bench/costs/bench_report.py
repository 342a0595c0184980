"""30-day cost reports over 10 million records loaded by COPY (PostgreSQL).

    DATABASE_URL=postgres://root@127.0.0.1:5432/co_dev_bench REDIS_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/costs/bench_report.py --records 10000000 --runs 7

Loads (once; skipped when the tenant already holds the records) 45 days of records for one
tenant with COPY, builds the daily rollups from them in SQL (`costs.services.rebuild_rollups`,
as the repair job does), runs VACUUM ANALYZE, then times each report through the whole
Django view stack (test client, JSON rendering included): one warm-up, then the median of
`--runs`. Same secrets as bench_ingest.py (the same database).
"""

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "costs"))
from bench_ingest import BENCH_ENV  # noqa: E402  (sets up Django with the bench secrets)
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from bench.costs.common import ENVS, PROJECTS, REGIONS, RESOURCES, SERVICES  # noqa: E402
from budgeting_site.platform.auth import issue_jwt  # noqa: E402
from costs import services  # noqa: E402
from costs.models import CostDailyRollup, CostRecord, FxRate  # noqa: E402
from costs.selectors import ReportRequest, build_report  # noqa: E402
from costs.services import RECORD_COLUMNS  # noqa: E402

TENANT = "bench-report"
DAYS = 45
END_DAY = date(2024, 6, 1)  # exclusive: records cover [2024-04-17, 2024-06-01)


def load(n: int) -> float:
    rng = random.Random(7)
    first = datetime.combine(END_DAY - timedelta(days=DAYS), datetime.min.time(), tzinfo=UTC)
    span = DAYS * 86400
    recorded = datetime(2024, 6, 1, tzinfo=UTC).isoformat()
    columns = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
    sql = f"COPY {CostRecord._meta.db_table} ({columns}) FROM STDIN"
    started = time.perf_counter()
    chunk = 50_000
    with transaction.atomic(), connection.cursor() as cur, cur.cursor.copy(sql) as copy:
        for base in range(0, n, chunk):
            buf = io.StringIO()
            for i in range(base, min(base + chunk, n)):
                ts = first + timedelta(
                    seconds=rng.randrange(span), microseconds=rng.randrange(10**6)
                )
                tags = f'{{"env":"{rng.choice(ENVS)}","team":"team-{rng.randrange(8)}"}}'
                values = {
                    "record_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "tenant_id": TENANT,
                    "idempotency_key": f"r-{i}",
                    "kind": "usage",
                    "resource_type": rng.choice(RESOURCES),
                    "resource_id": "",
                    "service_name": rng.choice(SERVICES),
                    "region": rng.choice(REGIONS),
                    "attributed_to_type": "project",
                    "attributed_to_id": rng.choice(PROJECTS),
                    "cost_amount": f"{rng.randrange(1, 10**7) / 10**5:.5f}",
                    "currency": "USD",
                    "usage_quantity": f"{rng.randrange(1, 10**6) / 100:.2f}",
                    "usage_unit": "unit",
                    "unit_price": "\\N",
                    "operation_context": "{}",
                    "tags": tags,
                    "timestamp": ts.isoformat(),
                    "recorded_at": recorded,
                    "reservation_id": "\\N",
                    "receipt_id": "\\N",
                    "counted": "t",
                    "reversed_by": "\\N",
                    "reversal_reason": "",
                    "reverses": "\\N",
                    "allocation_id": "\\N",
                    "created_by": "bench",
                }
                buf.write("\t".join(values[c] for c in RECORD_COLUMNS))
                buf.write("\n")
            copy.write(buf.getvalue())
    return time.perf_counter() - started


def timed(fn, runs: int) -> tuple[float, object]:
    result = fn()  # warm-up
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not FxRate.objects.filter(base_currency="USD", quote_currency="EUR").exists():
        services.set_fx_rate(
            base_currency="USD",
            quote_currency="EUR",
            rate=Decimal("0.9213"),
            effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        )

    existing = CostRecord.objects.filter(tenant_id=TENANT).count()
    info: dict[str, object] = {"records": existing}
    if existing < args.records:
        CostRecord.objects.filter(tenant_id=TENANT).delete()
        seconds = load(args.records)
        info["copy_load_seconds"] = round(seconds, 1)
        info["copy_load_records_per_s"] = round(args.records / seconds)
        t = time.perf_counter()
        days = [END_DAY - timedelta(days=i) for i in range(1, DAYS + 1)]
        services.rebuild_rollups(tenant_id=TENANT, days=days)
        info["rollup_build_seconds"] = round(time.perf_counter() - t, 1)
        info["records"] = args.records
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE costs_costrecord")
        cur.execute("VACUUM ANALYZE costs_costdailyrollup")
        cur.execute("SELECT pg_size_pretty(pg_total_relation_size('costs_costrecord'))")
        info["raw_table_size"] = cur.fetchone()[0]
    info["rollup_rows"] = CostDailyRollup.objects.filter(tenant_id=TENANT).count()

    token = issue_jwt(tenant_id=TENANT, roles=["auditor"], sub="bench", ttl_seconds=7200)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    window = "start_time=2024-05-02&end_time=2024-06-01"
    odd = "start_time=2024-05-01T13:37:00Z&end_time=2024-05-31T13:37:00Z"
    cases = [
        ("summary", f"report_type=summary&{window}"),
        ("by_resource", f"report_type=by_resource&{window}"),
        ("by_project", f"report_type=by_project&{window}"),
        ("by_time_period (day)", f"report_type=by_time_period&{window}"),
        ("group_by=service_name,region,day", f"group_by=service_name,region,day&{window}"),
        ("by_project in EUR", f"report_type=by_project&currency=EUR&{window}"),
        ("by_project as CSV", f"report_type=by_project&format=csv&{window}"),
        ("by_project, window not on day edges", f"report_type=by_project&{odd}"),
        ("by_tag (tag:env, raw table)", f"report_type=by_tag&tag_key=env&{window}"),
    ]
    rows = []
    for name, query in cases:

        def call(q: str = query) -> object:
            r = client.get(f"/budget/v1/cost-tracking/reports?{q}")
            assert r.status_code == 200, r.content[:300]
            return r

        seconds, response = timed(call, args.runs)
        total = (
            response["X-Report-Total-Cost"]
            if "csv" in query
            else json.loads(response.content)["total_cost"]
        )
        rows.append({"report": name, "median_s": round(seconds, 3), "total_cost": str(total)})
        print(f"{name:40s} {seconds * 1000:9.1f} ms  total {total}", flush=True)

    def raw_summary() -> object:
        req = ReportRequest(
            tenant_id=TENANT,
            report_type="by_project",
            currency="USD",
            start=datetime(2024, 5, 2, tzinfo=UTC),
            end=datetime(2024, 6, 1, tzinfo=UTC),
        )
        return build_report(req, use_rollups=False)

    seconds, report = timed(raw_summary, max(1, args.runs // 3))
    rows.append(
        {
            "report": "by_project without rollups (raw table, for comparison)",
            "median_s": round(seconds, 3),
            "total_cost": str(report["total_cost"]),
        }
    )
    print(
        f"{'by_project, raw table only':40s} {seconds * 1000:9.1f} ms  total {report['total_cost']}"
    )

    def records_page() -> object:
        r = client.get(f"/budget/v1/cost-tracking/records?{window}&page_size=100")
        assert r.status_code == 200
        return r

    seconds, _ = timed(records_page, args.runs)
    rows.append(
        {
            "report": "GET /records (page of 100 + aggregated + count)",
            "median_s": round(seconds, 3),
            "total_cost": "",
        }
    )
    print(f"{'GET /records page':40s} {seconds * 1000:9.1f} ms")
    info["load_average"] = round(os.getloadavg()[0], 1)
    info["cpus"] = os.cpu_count()
    info["bench_env"] = sorted(BENCH_ENV)
    out = {"setup": info, "reports": rows}
    print(json.dumps(info, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
