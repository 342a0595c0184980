"""Cost ingest: records per second through `POST /cost-tracking/record/batch` (gunicorn, real
HTTP on loopback, 1000 records per batch) next to a bare COPY of the same rows into the same
table in the same run.

    createdb -h 127.0.0.1 -U root co_dev_bench   # once: the bench's own database
    DATABASE_URL=postgres://root@127.0.0.1:5432/co_dev_bench REDIS_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/costs/bench_ingest.py --batches 60 --workers 2 --clients 3

`--in-process N` instead calls `costs.services.record_batch` itself for N batches (no HTTP,
one thread) and prints the median time of each phase of a batch, next to the same bare COPY.

The database is migrated by the script. It runs with its own DJANGO_SECRET_KEY (DEBUG off), so
it needs a database of its own: the receipt signing key is sealed with the secret key.

The server runs with DJANGO_DEBUG=0 (no query log), API_RATE_LIMITS=off, and a tenant with no
budgets (the budgets app is still called, and reads the tenant's budgets once per batch).
"""

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BENCH_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECURE": "0",
    "DJANGO_SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789abcdef",
    "JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123456789abcdef",
    "API_RATE_LIMITS": "off",
    "LOG_LEVEL": "WARNING",
}
os.environ.update(BENCH_ENV)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "budgeting_site.settings")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from bench.costs.common import make_items  # noqa: E402
from budgeting_site.platform.auth import issue_jwt  # noqa: E402
from costs.models import CostRecord  # noqa: E402
from costs.services import RECORD_COLUMNS, record_row  # noqa: E402


def start_server(port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, **BENCH_ENV}
    return subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "budgeting_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open("/tmp/bench_costs_gunicorn.log", "w"),
    )


def wait_healthy(base: str) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("server did not start")


def post_all(base: str, token: str, bodies: list[bytes], clients: int) -> tuple[float, list]:
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    answers: list[tuple[int, dict, float]] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(
            timeout=120,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ) as http:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                t = time.perf_counter()
                r = http.post(f"{base}/cost-tracking/record/batch", content=body)
                elapsed = time.perf_counter() - t
                with lock:
                    answers.append((r.status_code, r.json(), elapsed))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, answers


def copy_rows(tenant: str, batches: list[list[dict]], per_commit: bool) -> float:
    """The same rows (as the service would store them) by a bare COPY into costs_costrecord."""
    now = datetime.now(UTC)
    prepared = []
    for items in batches:
        rows = []
        for item in items:
            row = record_row(
                tenant_id=tenant,
                idempotency_key=item["idempotency_key"],
                resource_type=item["resource_type"],
                service_name=item["service_name"],
                region=item["region"],
                attributed_to_type=item["attributed_to_type"],
                attributed_to_id=item["attributed_to_id"],
                cost_amount=Decimal(item["cost_amount"]),
                usage_quantity=Decimal(item["usage_quantity"]),
                usage_unit=item["usage_unit"],
                tags=item["tags"],
                timestamp=datetime.fromisoformat(item["timestamp"]),
                recorded_at=now,
            )
            values = [row[c] for c in RECORD_COLUMNS]
            values[RECORD_COLUMNS.index("tags")] = json.dumps(row["tags"])
            values[RECORD_COLUMNS.index("operation_context")] = "{}"
            rows.append(values)
        prepared.append(rows)
    columns = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
    sql = f"COPY {CostRecord._meta.db_table} ({columns}) FROM STDIN"
    start = time.perf_counter()
    if per_commit:
        for rows in prepared:
            with transaction.atomic(), connection.cursor() as cur, cur.cursor.copy(sql) as cp:
                for values in rows:
                    cp.write_row(values)
    else:
        with transaction.atomic(), connection.cursor() as cur, cur.cursor.copy(sql) as cp:
            for rows in prepared:
                for values in rows:
                    cp.write_row(values)
    return time.perf_counter() - start


#: The phases of a batch: (module, function) pairs timed by wrapping them.
PHASES = (
    ("costs.services", "parse_record"),
    ("costs.services", "_row_from_input"),
    ("costs.services", "keys_in_use"),
    ("costs.services", "insert_new_records"),
    ("costs.services", "record_digest"),
    ("costs.services", "_emit_receipt"),
    ("costs.services", "count_inserted"),
    ("costs.budget_link", "apply_spending"),
)


def in_process(batches: list[list[dict]], run: str) -> dict:
    """record_batch called directly: the whole batch and each phase, medians in ms."""
    import importlib

    from costs import services

    spent: dict[str, float] = {}

    def timed(name: str, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    originals = []
    for module_name, attr in PHASES:
        module = importlib.import_module(module_name)
        originals.append((module, attr, getattr(module, attr)))
        setattr(module, attr, timed(attr, getattr(module, attr)))
    tenant = f"bench-inproc-{run}"
    actor = {"principal": "bench", "credential_id": "", "instance": "bench"}
    totals, per_phase = [], {attr: [] for _, attr in PHASES}
    try:
        for i, items in enumerate(batches):
            spent.clear()
            t = time.perf_counter()
            outcome = services.record_batch(tenant_id=tenant, items=items, actor=actor)
            elapsed = time.perf_counter() - t
            assert outcome.processed_count == len(items), outcome.failed_count
            if i < 2:
                continue  # warm-up
            totals.append(elapsed)
            for _, attr in PHASES:
                per_phase[attr].append(spent.get(attr, 0.0))
    finally:
        for module, attr, original in originals:
            setattr(module, attr, original)
    n = len(totals) * len(batches[0])
    return {
        "batches_timed": len(totals),
        "batch_ms_median": round(statistics.median(totals) * 1000, 1),
        "records_per_s": round(n / sum(totals)),
        "phase_ms_median": {k: round(statistics.median(v) * 1000, 1) for k, v in per_phase.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--port", type=int, default=18731)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--in-process", type=int, default=0, metavar="N")
    parser.add_argument(
        "--span-seconds",
        type=int,
        default=86000,
        help="timestamps spread over this many seconds before now (default: the last day, "
        "the rollups' worst case; 300: records arriving as they happen)",
    )
    args = parser.parse_args()
    if not settings.IS_POSTGRES:
        raise SystemExit("set DATABASE_URL to PostgreSQL")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)

    def batch(seed: int, key_prefix: str) -> list[dict]:
        """1000 records with timestamps over the last `--span-seconds`."""
        start = now - timedelta(seconds=args.span_seconds)
        return make_items(
            1000, seed=seed, key_prefix=key_prefix, start=start, span_seconds=args.span_seconds
        )

    if args.in_process:
        batches = [batch(i, f"{run}-{i}") for i in range(args.in_process)]
        result = in_process(batches, run)
        copy_commit = copy_rows(f"bench-copy-{run}", batches, per_commit=True)
        result["copy_per_1000_commit_records_per_s"] = round(args.in_process * 1000 / copy_commit)
        result["load_average"] = [round(x, 1) for x in os.getloadavg()]
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    tenant = f"bench-ingest-{run}"
    token = issue_jwt(tenant_id=tenant, roles=["service"], sub="bench", ttl_seconds=3600)
    warm = [batch(1000 + i, f"{run}-w{i}") for i in range(4)]
    batches = [batch(i, f"{run}-{i}") for i in range(args.batches)]
    bodies = [json.dumps({"records": b}).encode() for b in batches]

    server = start_server(args.port, args.workers)
    base = f"http://127.0.0.1:{args.port}/budget/v1"
    try:
        wait_healthy(base)
        _, warm_answers = post_all(
            base, token, [json.dumps({"records": b}).encode() for b in warm], args.clients
        )
        assert all(a[0] == 202 for a in warm_answers), warm_answers[:1]
        load_before = os.getloadavg()[0]
        elapsed, answers = post_all(base, token, bodies, args.clients)
        load_after = os.getloadavg()[0]
    finally:
        server.terminate()
        server.wait(10)

    bad = [a for a in answers if a[0] != 202 or a[1]["processed_count"] != 1000]
    stored = CostRecord.objects.filter(tenant_id=tenant).count()
    n = args.batches * 1000
    api_rate = n / elapsed
    latencies = sorted(a[2] for a in answers)

    copy_commit = copy_rows(f"bench-copy-{run}", batches, per_commit=True)
    copy_stream = copy_rows(f"bench-copy1-{run}", batches, per_commit=False)
    result = {
        "records": n,
        "batch_size": 1000,
        "gunicorn_workers": args.workers,
        "clients": args.clients,
        "timestamps_over_seconds": args.span_seconds,
        "failed_batches": len(bad),
        "stored": stored - 4000,
        "api_records_per_s": round(api_rate),
        "batch_latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "batch_latency_p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "copy_per_1000_commit_records_per_s": round(n / copy_commit),
        "copy_one_stream_records_per_s": round(n / copy_stream),
        "ratio_api_to_copy_per_1000": round(api_rate / (n / copy_commit), 3),
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
