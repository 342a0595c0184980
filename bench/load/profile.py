"""Where the time of one request goes, in process: the WSGI application called as gunicorn
calls it (every middleware, the view, the renderer, the request signals), without a socket.

    DATABASE_URL=postgres://root@127.0.0.1:5432/hp_bench REDIS_URL=redis://127.0.0.1:6379/5 \
        .venv/bin/python -m bench.load.profile [--n 2000] [--only minimal,ratelimit_check] \
        [--cprofile 40] [--repo OTHER_CHECKOUT]

Runs as deployed (`DJANGO_DEBUG=false`, this API's own limits on and never denying, as
bench/load/run.py) with the load bench's settings (its two reference views mounted), seeds a
policy and a budget for one tenant, and for each scenario of bench/load/run.py (the product
endpoints and the references, same bodies) prints the CPU time of this process per request,
the wall p50/p95, and the ratio to the minimal reference — the figures the machine's other
work hardly moves. `--rounds R` interleaves the scenarios R times and reports medians.
`--cprofile N` prints the top N functions by CPU time for each scenario. Under
`valgrind --tool=callgrind`, `--n` and the difference of two runs gives instructions per
request (`--instructions` does that: two callgrind runs per scenario, N and 3N requests).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if "--repo" in sys.argv:  # the code to profile: another checkout runs its own copy of this
    OTHER = Path(sys.argv[sys.argv.index("--repo") + 1]).resolve()
    if OTHER != REPO:
        os.chdir(OTHER)
        os.execv(sys.executable, [sys.executable, "-m", "bench.load.profile", *sys.argv[1:]])
sys.path.insert(0, str(REPO))
# Celery's Django fixup puts the working directory first on sys.path: make it the same code.
os.chdir(REPO)

TENANT = f"t-prof-{os.getpid()}"  # fresh: no holds of an earlier run are overdue


def _environ() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.load.settings"
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ["DJANGO_SECURE"] = "false"
    os.environ["DJANGO_ALLOWED_HOSTS"] = "127.0.0.1"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_urlsafe(48))
    os.environ.setdefault("JWT_SECRET", "bench-" + secrets.token_urlsafe(32))
    os.environ.setdefault(
        "RECEIPT_SIGNING_KEY", base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    )
    os.environ.pop("CELERY_BROKER_URL", None)
    # A loaded machine can hold a reply past 50 ms: measure the path, not its degraded answer.
    os.environ.setdefault("RATELIMIT_REDIS_TIMEOUT_MS", "1000")
    from bench.load.run import DEFAULT_API_LIMITS

    os.environ.setdefault("API_RATE_LIMITS", DEFAULT_API_LIMITS)


def _seed(tenant: str) -> None:
    from decimal import Decimal

    from budgeting_site.platform.principal import Principal
    from budgets import services as budgets
    from budgets.models import Budget
    from ratelimits import services as ratelimits
    from ratelimits.models import RateLimitPolicy

    admin = Principal(principal="bench", tenant_id=tenant, roles=frozenset({"tenant_admin"}))
    if not Budget.objects.filter(tenant_id=tenant).exists():
        budgets.create_budget(
            tenant_id=tenant,
            actor=admin,
            data={
                "budget_name": "load",
                "budget_amount": Decimal("1000000000"),
                "period_type": "monthly",
                "allocated_to_type": "project",
                "allocated_to_id": "p-load",
                "enforcement_action": "hard_stop",
            },
        )
    if not RateLimitPolicy.objects.filter(tenant_id=tenant).exists():
        ratelimits.policy_create(
            tenant_id=tenant,
            data={
                "scope_type": "tenant",
                "scope_id": tenant,
                "resource_type": "llm.tokens",
                "limit_value": 1_000_000_000,
                "time_window_seconds": 60,
                "algorithm": "token_bucket",
            },
            actor=admin.actor,
        )


def wsgi_request(
    handler: Any, method: str, path: str, body: bytes, token: str | None
) -> tuple[str, bytes]:
    """One request through a WSGI application, as gunicorn calls it: (status line, body)."""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
    }
    if body:
        environ["CONTENT_TYPE"] = "application/json"
        environ["CONTENT_LENGTH"] = str(len(body))
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    status: list[str] = []
    chunks = handler(environ, lambda code, headers, exc_info=None: status.append(code))
    data = b"".join(chunks)
    chunks.close()
    return status[0], data


def _caller(scenario: Any, token: str) -> Any:
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    body = json.dumps(scenario.body).encode() if scenario.body is not None else b""
    auth = token if scenario.auth else None

    def one() -> None:
        status, data = wsgi_request(handler, scenario.method, scenario.path, body, auth)
        assert status.startswith("2"), (scenario.name, status, data[:300])

    return one


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def _measure(one: Any, n: int) -> dict[str, float]:
    times = []
    cpu = time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        one()
        times.append((time.perf_counter() - started) * 1e6)
    cpu_us = (time.process_time() - cpu) * 1e6 / n
    return {"cpu_us": cpu_us, "p50_us": statistics.median(times), "p95_us": _pct(times, 95)}


def _instructions(args: argparse.Namespace, names: list[str]) -> None:
    """Instructions per request: callgrind runs of N and 3N requests, the difference / 2N."""
    per: dict[str, float] = {}
    for name in names:
        counts = []
        for n in (args.n, 3 * args.n):
            out = Path(f"/tmp/callgrind.bench-load.{os.getpid()}.{name}.{n}")
            done = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    "-m",
                    "bench.load.profile",
                    "--only",
                    name,
                    "--n",
                    str(n),
                    "--warm",
                    str(args.warm),
                    "--rounds",
                    "1",
                ],
                cwd=REPO,
                # valgrind runs the process some 50 times slower than it runs.
                env={**os.environ, "RATELIMIT_REDIS_TIMEOUT_MS": "5000"},
                capture_output=True,
                text=True,
            )
            match = re.search(r"Collected : (\d+)", done.stderr)
            if done.returncode or match is None:
                raise RuntimeError(done.stderr[-3000:])
            counts.append(int(match.group(1)))
            out.unlink(missing_ok=True)
        per[name] = (counts[1] - counts[0]) / (2 * args.n)
        print(f"{name:>16}: {per[name] / 1e6:.2f} M instructions per request", flush=True)
    if "minimal" in per:
        for name, count in per.items():
            print(f"{name:>16}: {count / per['minimal']:.2f}x the minimal reference")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="bare,minimal,ratelimit_check,budget_check")
    parser.add_argument("--cprofile", type=int, default=0)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--repo", help="profile the code of another checkout")
    args = parser.parse_args()
    names = args.only.split(",")
    _environ()
    if args.instructions:
        _instructions(args, names)
        return 0

    import django

    django.setup()
    import budgets

    assert Path(budgets.__file__).resolve().is_relative_to(REPO), budgets.__file__
    from bench.load.run import scenarios
    from budgeting_site.platform.auth import issue_jwt

    _seed(TENANT)
    token = issue_jwt(
        tenant_id=TENANT, roles=["service", "tenant_admin"], sub="load-svc", ttl_seconds=86400
    )
    by_name = {s.name: s for s in scenarios()}
    # Holds that outlive the run: no hold of this run falls due and is expired lazily by a
    # later check (a slow run under valgrind lasts minutes), so every request does the same.
    budget = by_name["budget_check"]
    budget.body = {**(budget.body or {}), "hold_ttl_seconds": 3600}
    callers = {name: _caller(by_name[name], token) for name in names}
    for one in callers.values():
        for _ in range(args.warm):
            one()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name, one in callers.items():
            results[name].append(_measure(one, args.n))
    minimal = None
    if "minimal" in results:
        minimal = statistics.median(r["cpu_us"] for r in results["minimal"])
    for name, runs in results.items():
        cpu = statistics.median(r["cpu_us"] for r in runs)
        ratio = f"  {cpu / minimal:.2f}x minimal" if minimal else ""
        print(
            f"{name:>16}: CPU {cpu:7.0f} µs/request  p50 "
            f"{statistics.median(r['p50_us'] for r in runs):7.0f} µs  p95 "
            f"{statistics.median(r['p95_us'] for r in runs):7.0f} µs{ratio}",
            flush=True,
        )
    if args.cprofile:
        import cProfile
        import pstats

        for name, one in callers.items():
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            for _ in range(args.n):
                one()
            profiler.disable()
            print(f"===== {name}")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.cprofile)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)
    print(f"load average {os.getloadavg()[0]:.1f}; code {REPO}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
