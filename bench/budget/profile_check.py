"""Where the time of one budget check goes, in process (no HTTP), on the database in
DATABASE_URL (PostgreSQL for the figures that matter).

    DATABASE_URL=postgres://root@127.0.0.1:5432/bp_dev .venv/bin/python \
        bench/budget/profile_check.py [--n 300] [--http] [--pyinstrument] [--sql]

Seeds a fresh tenant like bench/budget/run.py (a tenant-level hard_stop budget and 16 project
hard_stop budgets, amounts far above what a run spends), then runs `--n` checks, each naming
one project, and prints p50/p95/p99 of the whole check and of the parts it can separate:
`--sql` lists the statements of one check with their time; `--pyinstrument` prints a profile
of the checks (needs `pip install pyinstrument`), `--cprofile N` the top N functions by CPU
time. `--http` calls the WSGI application as gunicorn does (the middleware, the view, the
serializer, the renderer, the request signals), without a socket. `--production` runs as
deployed (`DJANGO_DEBUG=false`) on the bench's own database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if "--repo" in sys.argv:  # the code to profile (another checkout), before anything imports it
    REPO = Path(sys.argv[sys.argv.index("--repo") + 1]).resolve()
sys.path.insert(0, str(REPO))
# Celery's Django fixup puts the working directory first on sys.path: make it the same code.
os.chdir(REPO)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "budgeting_site.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("API_RATE_LIMITS", "off")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--sql", action="store_true")
    parser.add_argument(
        "--cprofile", type=int, default=0, help="print the top N functions by CPU time"
    )
    parser.add_argument("--repo", help="profile the code of another checkout")
    parser.add_argument(
        "--production",
        action="store_true",
        help="as deployed (DJANGO_DEBUG=false, fresh secrets and signing key), on the bench's "
        "own database <name>_bench (see run.py)",
    )
    args = parser.parse_args()
    if args.production:
        import base64
        import secrets

        sys.path.insert(1, str(Path(__file__).parent))
        from run import bench_database

        os.environ["DATABASE_URL"] = bench_database(
            os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/bp_dev")
        )
        os.environ["DJANGO_DEBUG"] = "false"
        os.environ["DJANGO_SECURE"] = "false"
        os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver,127.0.0.1"
        os.environ["DJANGO_SECRET_KEY"] = "bench-" + secrets.token_urlsafe(48)
        os.environ["JWT_SECRET"] = "bench-" + secrets.token_urlsafe(32)
        os.environ["RECEIPT_SIGNING_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()

    import django

    django.setup()
    import budgets

    assert Path(budgets.__file__).resolve().is_relative_to(REPO), budgets.__file__
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from budgeting_site.platform.principal import Principal
    from budgets import services

    tenant = f"t-prof-{uuid.uuid4().hex[:8]}"
    admin = Principal(principal="bench", tenant_id=tenant, roles=frozenset({"tenant_admin"}))
    caller = Principal(principal="svc", tenant_id=tenant, roles=frozenset({"service"}))

    def make(kind: str, target: str) -> None:
        services.create_budget(
            tenant_id=tenant,
            actor=admin,
            data={
                "budget_name": f"bench {kind} {target}",
                "budget_amount": Decimal("1000000000"),
                "period_type": "monthly",
                "allocated_to_type": kind,
                "allocated_to_id": target,
                "enforcement_action": "hard_stop",
            },
        )

    make("tenant", tenant)
    for i in range(16):
        make("project", f"p{i}")

    counter = 0
    if args.http:
        import json

        from django.core.handlers.wsgi import WSGIHandler

        from bench.load.profile import wsgi_request

        handler = WSGIHandler()  # what gunicorn calls: middleware, view, renderer, signals
        token = _token(tenant)

        def one() -> None:
            nonlocal counter
            counter += 1
            body = json.dumps(
                {
                    "estimated_cost": "1",
                    "resource_type": "llm.tokens",
                    "operation_context": {"project_id": f"p{counter % 16}"},
                }
            ).encode()
            status, data = wsgi_request(handler, "POST", "/budget/v1/budgets/check", body, token)
            assert status.startswith("200"), (status, data)
            assert data.startswith(b'{"allowed":true'), data
    else:

        def one() -> None:
            nonlocal counter
            counter += 1
            result = services.check_budget(
                tenant_id=tenant,
                principal=caller,
                check=services.CheckInput(
                    estimated_cost=Decimal(1),
                    resource_type="llm.tokens",
                    operation_context={"project_id": f"p{counter % 16}"},
                ),
            )
            assert result["allowed"] is True

    for _ in range(30):  # warm caches, connections and the signing key
        one()
    if args.sql:
        connection.force_debug_cursor = True
        with CaptureQueriesContext(connection) as captured:
            one()
        print(f"-- {len(captured.captured_queries)} statements in one check")
        for q in captured.captured_queries:
            print(f"{float(q['time']) * 1000:7.2f} ms  {q['sql'][:300]}")
    times = []
    cpu_started = time.process_time()
    profiler = None
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
    cprofile = None
    if args.cprofile:
        import cProfile

        cprofile = cProfile.Profile(time.process_time)
        cprofile.enable()
    for _ in range(args.n):
        started = time.perf_counter()
        one()
        times.append((time.perf_counter() - started) * 1000)
    cpu_ms = (time.process_time() - cpu_started) * 1000 / args.n
    if cprofile is not None:
        import pstats

        cprofile.disable()
        stats = pstats.Stats(cprofile)
        stats.sort_stats("cumulative").print_stats(args.cprofile)
        stats.sort_stats("tottime").print_stats(args.cprofile)
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
    print(
        f"{'http' if args.http else 'service'} check, n={args.n}: "
        f"p50 {statistics.median(times):.2f} ms, p95 {pct(times, 95):.2f} ms, "
        f"p99 {pct(times, 99):.2f} ms, mean {statistics.mean(times):.2f} ms, "
        f"CPU of this process {cpu_ms:.2f} ms per check; code {REPO}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    return 0


def _token(tenant: str) -> str:
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("issue_token", "--tenant", tenant, "--roles", "service", stdout=out)
    return out.getvalue().strip()


if __name__ == "__main__":
    sys.exit(main())
