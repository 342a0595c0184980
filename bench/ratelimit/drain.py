"""What draining one rate-limit receipt costs, in process (SPEC 6, `ratelimits.drain_receipts`).

A benchmark, not a test: it measures, it asserts nothing. Each run pushes --n decisions through
the real check path (`ratelimits.services.check`, Redis store: the Lua script appends each
decision's facts to `rl:{tenant}:receipts`), then times one `drain_receipts()` that signs and
stores them all (read the stream, decode, build, canonical bytes, Ed25519, COPY, XDEL), after a
warm-up drain (steady state, as in the worker draining every second). It prints, per receipt,
the CPU time of this process (what the Celery worker spends on the two shared cores) and the
wall time (PostgreSQL and Redis included): medians of --runs runs, with the load averages.

    DATABASE_URL=postgres://root@127.0.0.1:5432/dr_dev REDIS_URL=redis://127.0.0.1:6379/12 \
        flock /tmp/bench.lock .venv/bin/python bench/ratelimit/drain.py [--n 2000] [--runs 7] \
        [--cprofile 30] [--baseline OTHER_CHECKOUT]

`--cprofile N` adds one profiled drain and prints its top N functions by own time.
`--baseline DIR` interleaves run by run with another checkout holding its own copy of this
script (e.g. `git archive <commit> | tar -x -C DIR`, then copy this file in), both on the same
database and Redis, and prints both medians and the ratio of the medians.
The database must be migrated (`manage.py migrate`); each run uses a fresh tenant.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)


def _environ() -> None:
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        sys.exit("set DATABASE_URL (PostgreSQL) and REDIS_URL")
    os.environ["DJANGO_SETTINGS_MODULE"] = "budgeting_site.settings"
    os.environ["RATELIMIT_STORE"] = "redis"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["RATELIMIT_REDIS_TIMEOUT_MS"] = "2000"
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ.pop("API_RATE_LIMITS", None)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_urlsafe(48))
    os.environ.setdefault(
        "RECEIPT_SIGNING_KEY", base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    )


def _push(tenant: str, n: int) -> None:
    """n checks of the load bench's body for `tenant` (seeded by `bench.load.profile._seed`)."""
    from budgeting_site.platform.principal import Principal
    from ratelimits import services

    service = Principal(principal="svc-bench", tenant_id=tenant, roles=frozenset({"service"}))
    req = services.CheckRequest(tenant_id=tenant, resource_type="llm.tokens", resource_key="k1")
    for _ in range(n):
        services.check(req=req, principal=service, with_api_limit=False)


def one_run(n: int, profile: int = 0) -> dict[str, float]:
    """Warm up, push n decisions, drain them once: µs per receipt (CPU of this process, wall)."""
    from bench.load.profile import _seed
    from ratelimits import runtime, services
    from receipts.models import Receipt

    tenant = f"t-drain-{os.getpid()}-{secrets.token_hex(4)}"
    _seed(tenant)  # a policy that never denies: the same facts as the load bench
    runtime.reset()
    store = runtime.policy_store()
    # Steady state, as in the worker (a drain a second): key, connections and caches warm.
    _push(tenant, 20)
    services.drain_receipts(full_scan=False, store=store)
    _push(tenant, n)
    cpu, wall = time.process_time(), time.perf_counter()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        written = profiler.runcall(services.drain_receipts, full_scan=False, store=store)
    else:
        written = services.drain_receipts(full_scan=False, store=store)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    stored = Receipt.objects.filter(tenant_id=tenant, gate_id="rate-limit-check").count()
    if written != n or stored != n + 20:
        sys.exit(f"drained {written}, stored {stored}, expected {n} (+20 of the warm-up)")
    if profile:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(profile)
    return {"cpu_us": cpu / n * 1e6, "wall_us": wall / n * 1e6}


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _child(repo: Path, args: argparse.Namespace) -> list[dict[str, float]]:
    command = [sys.executable, str(repo / "bench/ratelimit/drain.py"), "--json"]
    command += ["--n", str(args.n), "--runs", "1"]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=repo)
    return json.loads(out.stdout)


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="decisions per run")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    parser.add_argument("--baseline", type=Path, help="another checkout, interleaved")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _environ()

    load_before = _load()
    if args.baseline is not None:
        ours: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        for _ in range(args.runs):
            theirs += _child(args.baseline.resolve(), args)
            ours += _child(ROOT, args)
        print(f"load average before: {load_before}, after: {_load()}")
        print(f"{args.runs} interleaved runs of {args.n} receipts, medians, µs per receipt:")
        for key in ("cpu_us", "wall_us"):
            a, b = _median(theirs, key), _median(ours, key)
            print(f"  {key}: baseline {a:.1f}  this {b:.1f}  ratio {b / a:.2f}")
            print(f"    baseline runs {[round(r[key], 1) for r in theirs]}")
            print(f"    this runs     {[round(r[key], 1) for r in ours]}")
        return

    import django

    django.setup()
    runs = [one_run(args.n) for _ in range(args.runs)]
    if args.json:
        print(json.dumps(runs))
        return
    print(f"load average before: {load_before}, after: {_load()}")
    print(f"{args.runs} runs of {args.n} receipts, µs per receipt (median; runs):")
    for key in ("cpu_us", "wall_us"):
        print(f"  {key}: {_median(runs, key):.1f}  {[round(r[key], 1) for r in runs]}")
    if args.cprofile:
        one_run(args.n, profile=args.cprofile)


if __name__ == "__main__":
    main()
