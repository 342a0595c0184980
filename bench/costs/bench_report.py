"""30-day cost reports over 10 million records (PostgreSQL).

    DATABASE_URL=postgres://root@127.0.0.1:5432/co_dev_bench REDIS_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/costs/bench_report.py --records 10000000 --runs 7

Loads (once; skipped when the tenant already holds the records) 45 days of records for one
tenant, generated inside PostgreSQL with the table's indexes dropped and built again after
(`load`: ~2.5 minutes for 10 M rows, against ~25 for a COPY streamed from Python into the
indexed table), builds the daily, hourly, tag and tag-set rollups from them in SQL
(`costs.rollups.repair_rollups`, as the repair job does), runs VACUUM ANALYZE, then times
each report through the whole Django view stack (test client, JSON rendering included): one
warm-up, then the median of `--runs`. Same secrets as bench_ingest.py (the same database).
"""

import argparse
import json
import os
import statistics
import sys
import time
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
from costs import rollups, services  # noqa: E402
from costs.models import (  # noqa: E402
    CostDailyRollup,
    CostHourlyRollup,
    CostRecord,
    CostTagRollup,
    CostTagSetDailyRollup,
    CostTagSetHourlyRollup,
    FxRate,
)
from costs.selectors import ReportRequest, build_report  # noqa: E402
from costs.services import RECORD_COLUMNS  # noqa: E402

TENANT = "bench-report"
DAYS = 45
END_DAY = date(2024, 6, 1)  # exclusive: records cover [2024-04-17, 2024-06-01)


def _sql_choice(values: tuple[str, ...]) -> str:
    """A uniformly random element of `values`, as an SQL expression (constants of this file)."""
    array = ", ".join(f"'{v}'" for v in values)
    return f"(ARRAY[{array}])[1 + floor(random() * {len(values)})::int]"


def load(n: int) -> float:
    """Generate the records inside PostgreSQL (one INSERT ... SELECT over generate_series, no
    client round trips) with the table's indexes and unique constraints dropped, then build
    them again: ~10x faster than a COPY streamed from Python into an indexed table. The same
    dimensions and distributions as bench/costs/common.py; setseed makes it repeatable."""
    table = CostRecord._meta.db_table
    first = datetime.combine(END_DAY - timedelta(days=DAYS), datetime.min.time(), tzinfo=UTC)
    values = {
        "record_id": "gen_random_uuid()",
        "tenant_id": f"'{TENANT}'",
        "idempotency_key": "'r-' || i",
        "kind": "'usage'",
        "resource_type": _sql_choice(RESOURCES),
        "resource_id": "''",
        "service_name": _sql_choice(SERVICES),
        "region": _sql_choice(REGIONS),
        "attributed_to_type": "'project'",
        "attributed_to_id": _sql_choice(PROJECTS),
        "cost_amount": "(1 + floor(random() * (10^7 - 1))) / 10^5",
        "currency": "'USD'",
        "usage_quantity": "(1 + floor(random() * (10^6 - 1))) / 100",
        "usage_unit": "'unit'",
        "unit_price": "NULL",
        "operation_context": "'{}'::jsonb",
        "tags": (
            f"jsonb_build_object('env', {_sql_choice(ENVS)}, "
            "'team', 'team-' || floor(random() * 8)::int)"
        ),
        # In arrival order, as a live table fills (the BRIN on time relies on it): record i
        # lands at a random instant of its 1/n-th of the span.
        "timestamp": (
            f"'{first.isoformat()}'::timestamptz + make_interval(secs => "
            f"floor((i + random()) * {DAYS * 86400} * 10^6 / {n}) / 10^6)"
        ),
        "recorded_at": "'2024-06-01T00:00:00+00:00'::timestamptz",
        "reservation_id": "NULL",
        "receipt_id": "NULL",
        "counted": "true",
        "reversed_by": "NULL",
        "reversal_reason": "''",
        "reverses": "NULL",
        "allocation_id": "NULL",
        "created_by": "'bench'",
    }
    columns = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
    select = ", ".join(values[c] for c in RECORD_COLUMNS)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype IN ('p', 'u')",
            [table],
        )
        constraints = cur.fetchall()
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
            "AND indexname <> ALL(%s)",
            [table, [name for name, _ in constraints]],
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        for name, _ in constraints:
            cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        cur.execute("SELECT setseed(0.7)")
        cur.execute(
            f"INSERT INTO {table} ({columns}) SELECT {select} FROM generate_series(0, %s - 1) AS i",
            [n],
        )
        for name, definition in constraints:
            cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            cur.execute(definition)
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
    parser.add_argument(
        "--rebuild-rollups", action="store_true", help="rebuild them even if loaded already"
    )
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
        info["load_seconds"] = round(seconds, 1)
        info["load_records_per_s"] = round(args.records / seconds)
        info["records"] = args.records
    if existing < args.records or args.rebuild_rollups:
        t = time.perf_counter()
        days = [END_DAY - timedelta(days=i) for i in range(1, DAYS + 1)]
        rollups.repair_rollups(tenant_id=TENANT, days=days)
        info["rollup_build_seconds"] = round(time.perf_counter() - t, 1)
    models = (
        CostRecord,
        CostDailyRollup,
        CostHourlyRollup,
        CostTagRollup,
        CostTagSetDailyRollup,
        CostTagSetHourlyRollup,
    )
    with connection.cursor() as cur:
        for model in models:
            cur.execute(f"VACUUM ANALYZE {model._meta.db_table}")
        cur.execute("SELECT pg_size_pretty(pg_total_relation_size('costs_costrecord'))")
        info["raw_table_size"] = cur.fetchone()[0]
    info["rollup_rows"] = {
        m.__name__: m.objects.filter(tenant_id=TENANT).count() for m in models[1:]
    }

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
        ("by_project, 13:37 to 13:37", f"report_type=by_project&{odd}"),
        ("group_by=service_name,day, 13:37 to 13:37", f"group_by=service_name,day&{odd}"),
        ("by_tag (tag:env)", f"report_type=by_tag&tag_key=env&{window}"),
        ("group_by=tag:team,day", f"group_by=tag:team,day&{window}"),
        ("by_project, tag=env:prod", f"report_type=by_project&tag=env:prod&{window}"),
        ("by_tag, 13:37 to 13:37", f"report_type=by_tag&tag_key=env&{odd}"),
        (
            "by_tag, tag=team:team-1 (two keys)",
            f"report_type=by_tag&tag_key=env&tag=team:team-1&{window}",
        ),
        (
            "by_project, tag=env:prod, 13:37 to 13:37 (partial days raw)",
            f"report_type=by_project&tag=env:prod&{odd}",
        ),
        (
            "by_project, tag=env:prod, tag=team:team-1 (raw)",
            f"report_type=by_project&tag=env:prod&tag=team:team-1&{window}",
        ),
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

    pages = [
        ("GET /records (page of 100 + aggregated + count)", ""),
        ("GET /records?resource_type=gpu_hours", "&resource_type=gpu_hours"),
        (
            "GET /records?attributed_to_id=proj-07",
            "&attributed_to_type=project&attributed_to_id=proj-07",
        ),
        ("GET /records?tag=env:prod", "&tag=env:prod"),
        (
            "GET /records, 13:37 to 13:37",
            "&start_time=2024-05-01T13:37:00Z&end_time=2024-05-31T13:37:00Z",
        ),
    ]
    for name, extra in pages:
        base = window if "start_time" not in extra else ""

        def records_page(q: str = f"{base}{extra}") -> object:
            r = client.get(f"/budget/v1/cost-tracking/records?{q.lstrip('&')}&page_size=100")
            assert r.status_code == 200, r.content[:300]
            return r

        seconds, _ = timed(records_page, args.runs)
        rows.append({"report": name, "median_s": round(seconds, 3), "total_cost": ""})
        print(f"{name:40s} {seconds * 1000:9.1f} ms", flush=True)
    info["load_average"] = round(os.getloadavg()[0], 1)
    info["cpus"] = os.cpu_count()
    info["bench_env"] = sorted(BENCH_ENV)
    out = {"setup": info, "reports": rows}
    print(json.dumps(info, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
