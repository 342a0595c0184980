"""HTTP budget checks on PostgreSQL through gunicorn (issue 5's bench).

Starts gunicorn (as the Dockerfile: 4 workers x 4 threads, `--threads 1` for sync workers) on
a loopback port against PostgreSQL (its own database `<name>_bench` beside the one in
DATABASE_URL, default `bp_dev`; created when missing: each run activates a fresh receipt
signing key, which must not become a development database's active key), seeds two tenants,
and drives `POST /budget/v1/budgets/check` with wrk (bench/budget/check.lua):

- latency and throughput at 1, 16 and 64 clients: tenant `t-bench-<run>` with a tenant-level
  hard_stop budget and 16 project hard_stop budgets (amounts far above what a run spends), each
  check naming one project, so every check locks and holds two period rows and one of them (the
  tenant's) is shared by every request: the contended case;
- the overspend run: tenant `t-over-<run>` with a tenant hard_stop budget of 10 x K and one
  project hard_stop budget sized for exactly K checks, hammered by 64 clients until well past
  K; overspend = allowed answers above K, and spent + reserved above the amount in the
  database (goal: both 0).

    DATABASE_URL=postgres://root@127.0.0.1:5432/bp_dev .venv/bin/python bench/budget/run.py \
        --seconds 10 --runs 3 --write

The server runs as deployed: `DJANGO_DEBUG=false` (fresh secrets and a fresh receipt
signing key for the run), `API_RATE_LIMITS=off` so the figures are the budget path. The
1/16/64-client phases are repeated `--runs` times; the table gives the median of each figure
over the runs, with the load average of the machine (other work shares its two cores) at the
start of each phase. Before each run the bench also measures the durable-commit floor: one
client locking and updating one period row and committing (`BEGIN; SELECT ... FOR UPDATE;
UPDATE; COMMIT` over psycopg, no Python of ours): no check can answer faster than
PostgreSQL's own commit with its WAL flush, so that is the figure to judge the 1-client
latency against. wrk runs on
the same cores as gunicorn and PostgreSQL, so every figure includes the load generator.

`--repo PATH` serves another checkout of the code (e.g. the committed version, to compare).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parents[2]
REPO = HERE
LUA = Path(__file__).with_name("check.lua")
PY = str(Path(sys.executable))
RESULTS = HERE / "bench" / "RESULTS.md"
CLIENTS = (1, 16, 64)
SECTION = "## Budgets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [PY, "manage.py", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


SEED = """
from decimal import Decimal
from budgeting_site.platform.principal import Principal
from budgets import services
def make(tenant, kind, target, amount):
    actor = Principal(principal="bench", tenant_id=tenant, roles=frozenset({"tenant_admin"}))
    services.create_budget(tenant_id=tenant, actor=actor, data={
        "budget_name": f"bench {kind} {target}", "budget_amount": Decimal(amount),
        "period_type": "monthly", "allocated_to_type": kind, "allocated_to_id": target,
        "enforcement_action": "hard_stop"})
make("__LOAD__", "tenant", "__LOAD__", "1000000000")
for i in range(16):
    make("__LOAD__", "project", "p" + str(i), "1000000000")
make("__OVER__", "tenant", "__OVER__", "__OVER_TENANT_AMOUNT__")
make("__OVER__", "project", "ov0", "__K_AMOUNT__")
"""

DB_CHECK = """
from budgets.models import BudgetPeriod
from django.db.models import F
rows = BudgetPeriod.objects.filter(tenant_id="__OVER__").annotate(
    used=F("spent_amount") + F("reserved_amount"))
print("DBJSON", [[r.budget.allocated_to_type, str(r.used), str(r.budget_amount)] for r in rows])
"""


TICK = os.sysconf("SC_CLK_TCK")


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live process so far, in seconds."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return found


def _cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two snapshots: processes in both count their difference, processes
    that started in between count all of theirs; one that ended in between is lost (the
    bench's connections live CONN_MAX_AGE, 60 s, longer than a phase, so at most one set)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def server_pids(master: int, database_url: str) -> dict[str, list[int]]:
    """The gunicorn workers (children of the master) and the PostgreSQL backends of the bench
    database (the workers' persistent connections)."""
    import psycopg

    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            workers.append(int(stat.parent.name))
    url = database_url.replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        backends = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
        ]
    return {"app": workers, "db": backends}


def wrk(
    port: int,
    env: dict[str, str],
    clients: int,
    seconds: int,
    extra: dict[str, str],
    server: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """One wrk phase. With `server` (gunicorn master pid, database URL): CPU time per check of
    the gunicorn workers, of their PostgreSQL backends and of wrk itself, in µs — figures that
    the other work on the machine hardly changes, unlike latency."""
    threads = 1 if clients == 1 else 2
    run_env = {**env, **extra}
    cpu_before = {k: _cpu_by_pid(v) for k, v in server_pids(*server).items()} if server else {}
    children_before = os.times()
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}",
        ],
        env=run_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"WRKJSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(out)
    result = json.loads(match.group(1))
    result["clients"] = clients
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    if server:
        children = os.times()
        now = server_pids(*server)
        spent = {
            k: _cpu_spent(cpu_before[k], _cpu_by_pid(now[k] + list(cpu_before[k]))) for k in now
        }
        spent["wrk"] = (children.children_user + children.children_system) - (
            children_before.children_user + children_before.children_system
        )
        count = max(result["requests"], 1)
        result["cpu_us"] = {k: round(v * 1e6 / count) for k, v in spent.items()}
    return result


FLOOR = """
import json, os, time, psycopg
from budgets.models import BudgetPeriod
row = BudgetPeriod.objects.filter(tenant_id="__LOAD__", budget__allocated_to_type="tenant").get()
url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
times = []
with psycopg.connect(url) as conn:
    for i in range(__N__):
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("SELECT id FROM budgets_budgetperiod WHERE id = %s FOR UPDATE", [row.pk])
            conn.execute(
                "UPDATE budgets_budgetperiod SET signals = signals WHERE id = %s", [row.pk]
            )
        times.append((time.perf_counter() - started) * 1e6)
times.sort()
pick = lambda p: times[min(len(times) - 1, round(p / 100 * (len(times) - 1)))]
print("FLOORJSON", json.dumps({"p50_us": pick(50), "p95_us": pick(95), "p99_us": pick(99)}))
"""


def floor(env: dict[str, str], tenant: str, n: int = 300) -> dict[str, Any]:
    out = manage(env, "shell", stdin=FLOOR.replace("__LOAD__", tenant).replace("__N__", str(n)))
    match = re.search(r"FLOORJSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(out)
    return json.loads(match.group(1))


def bench_database(url: str) -> str:
    """The bench's own database next to the one in DATABASE_URL (`<name>_bench`, created when
    missing): each run activates a fresh receipt signing key from the environment, which must
    not become the active key of a development database."""
    import psycopg

    base, _, name = url.rpartition("/")
    name = name.split("?")[0]
    bench = name if name.endswith("_bench") else f"{name}_bench"
    admin = base.replace("postgres://", "postgresql://", 1) + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [bench]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{bench}"')
    return f"{base}/{bench}"


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> int:
    global REPO
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of the 1/16/64 phases")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=4, help="per worker, as the Dockerfile (1: sync workers)"
    )
    parser.add_argument("--k", type=int, default=300, help="checks the overspend budget admits")
    parser.add_argument("--repo", default=str(HERE), help="the checkout whose code is served")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    REPO = Path(args.repo).resolve()

    run = uuid.uuid4().hex[:8]
    load, over = f"t-bench-{run}", f"t-over-{run}"
    database_url = bench_database(
        os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/bp_dev")
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "API_RATE_LIMITS": "off",
        "LOG_LEVEL": "WARNING",
        # As deployed: no debug cursor wrappers, no query log.
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
        "JWT_SECRET": "bench-" + secrets.token_urlsafe(32),
        "RECEIPT_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE": "false",
        "PYTHONPATH": str(REPO),
    }
    env.pop("CELERY_BROKER_URL", None)
    manage(env, "migrate", "-v0")
    manage(
        env,
        "shell",
        stdin=SEED.replace("__LOAD__", load)
        .replace("__OVER__", over)
        .replace("__K_AMOUNT__", str(args.k))
        .replace("__OVER_TENANT_AMOUNT__", str(args.k * 10)),
    )
    token_load = manage(
        env, "issue_token", "--tenant", load, "--roles", "service", "--ttl", "86400"
    ).strip()
    token_over = manage(
        env, "issue_token", "--tenant", over, "--roles", "service", "--ttl", "86400"
    ).strip()
    port = free_port()
    log = open(f"/tmp/bench-budget-{run}.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [
            str(Path(PY).parent / "gunicorn"),
            "budgeting_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--backlog",
            "2048",
            "--access-logfile",
            "/dev/null",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    results: dict[str, Any] = {
        "run": run,
        "workers": args.workers,
        "threads": args.threads,
        "k": args.k,
        "seconds": args.seconds,
        "repo": str(REPO),
        "git": _git(REPO),
    }
    results["load_before"] = _load()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/budget/v1/health", timeout=2).status_code:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not come up")
            time.sleep(0.3)
        common = {"BENCH_TOKEN": token_load, "BENCH_PROJECT_PREFIX": "p", "BENCH_PROJECTS": "16"}
        wrk(port, env, 8, 3, common)  # warm every worker's connections and caches
        runs = []
        for _ in range(args.runs):
            one: dict[str, Any] = {"floor": {**floor(env, load), "load": _load()}}
            phases = []
            for clients in CLIENTS:
                started_load = _load()
                phase = wrk(port, env, clients, args.seconds, common, (server.pid, database_url))
                phase["load"] = started_load
                phases.append(phase)
            one["phases"] = phases
            runs.append(one)
        results["runs"] = runs
        results["median"] = _medians(runs)
        over_env = {"BENCH_TOKEN": token_over, "BENCH_PROJECT_PREFIX": "ov", "BENCH_PROJECTS": "1"}
        # Long enough that far more than K checks arrive (the answers after K are denials).
        results["overspend"] = wrk(port, env, 64, 2 * args.seconds, over_env)
        db = manage(env, "shell", stdin=DB_CHECK.replace("__OVER__", over))
        rows = json.loads(re.search(r"DBJSON (.*)", db).group(1).replace("'", '"'))
        results["overspend_db"] = rows
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()

    results["load_after"] = _load()
    over_result = results["overspend"]
    project_used = next(float(used) for kind, used, _ in rows if kind == "project")
    results["overspend_count"] = max(0, over_result["allowed"] - args.k)
    results["db_over_amount"] = sum(1 for _, used, amount in rows if float(used) > float(amount))
    print(json.dumps(results, indent=2))
    if args.write:
        write_results(results, project_used)
    return 0


def _git(repo: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "budgets", "receipts"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    phases = []
    for index, clients in enumerate(CLIENTS):
        of = [r["phases"][index] for r in runs]
        phases.append(
            {
                "clients": clients,
                "requests": statistics.median(p["requests"] for p in of),
                "rps": statistics.median(p["rps"] for p in of),
                "p50_us": statistics.median(p["p50_us"] for p in of),
                "p95_us": statistics.median(p["p95_us"] for p in of),
                "p99_us": statistics.median(p["p99_us"] for p in of),
                "non_200": sum(_non_200(p) for p in of),
                "loads": [p["load"] for p in of],
                "cpu_us": {
                    k: statistics.median(p["cpu_us"][k] for p in of) for k in ("app", "db", "wrk")
                },
            }
        )
    floor_of = [r["floor"] for r in runs]
    return {
        "phases": phases,
        "floor": {
            "p50_us": statistics.median(f["p50_us"] for f in floor_of),
            "p95_us": statistics.median(f["p95_us"] for f in floor_of),
            "loads": [f["load"] for f in floor_of],
        },
    }


def _workers(results: dict[str, Any]) -> str:
    threads = results.get("threads", 1)
    if threads > 1:
        return f"{results['workers']} workers x {threads} threads (gthread, keep-alive)"
    return f"{results['workers']} sync workers"


def _non_200(phase: dict[str, Any]) -> int:
    return sum(v for k, v in phase["codes"].items() if k != "200") + phase["socket_errors"]


def _ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def write_results(results: dict[str, Any], project_used: float) -> None:
    median = results["median"]
    over = results["overspend"]
    phases = median["phases"]
    lines = [
        SECTION,
        "",
        "Command (from the repository root, PostgreSQL 15 on loopback, 2 CPUs shared with other",
        "work; wrk runs on the same cores):",
        "",
        "    DATABASE_URL=postgres://root@127.0.0.1:5432/bp_dev .venv/bin/python "
        f"bench/budget/run.py --seconds {results['seconds']} --runs {len(results['runs'])} "
        "--write",
        "",
        f"Run {results['run']} of {results['git']}: gunicorn {_workers(results)}, as the",
        f"Dockerfile; `DJANGO_DEBUG=false`, `API_RATE_LIMITS=off`, Python "
        f"{platform.python_version()}.",
        "Each check names one of 16 projects: it locks and holds the tenant's hard_stop period",
        "row (shared by every request: the contended case) and its project's, writes the",
        "reservation, two hold lines and the signed receipt in one transaction. Medians over",
        f"{len(results['runs'])} runs of {results['seconds']} s per phase; load average "
        f"before/after the whole bench {results['load_before']}/{results['load_after']}.",
        "",
        "| clients | checks/s | p50 ms | p95 ms | p99 ms | non-200 | CPU µs/check: gunicorn "
        "/ PostgreSQL / wrk | load average |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for p in phases:
        cpu = p["cpu_us"]
        lines.append(
            f"| {p['clients']} | {p['rps']:.0f} | {_ms(p['p50_us'])} | {_ms(p['p95_us'])} | "
            f"{_ms(p['p99_us'])} | {p['non_200']} | {cpu['app']:.0f} / {cpu['db']:.0f} / "
            f"{cpu['wrk']:.0f} | {', '.join(p['loads'])} |"
        )
    fl = median["floor"]
    goal = "met" if phases[0]["p95_us"] < 5000 else "NOT met"
    lines += [
        "",
        f"Durable-commit floor (one client: `BEGIN; SELECT ... FOR UPDATE; UPDATE; COMMIT` of "
        f"one period row over psycopg, nothing of ours): p50 {_ms(fl['p50_us'])} ms, p95 "
        f"{_ms(fl['p95_us'])} ms (load average {', '.join(fl['loads'])}).",
        "",
        f"Service time at 1 client: p95 {_ms(phases[0]['p95_us'])} ms (goal < 5 ms: {goal}).",
        "",
        "Per run (p50 / p95 ms, checks/s):",
        "",
    ]
    for i, r in enumerate(results["runs"], 1):
        parts = [
            f"{p['clients']} client{'s' if p['clients'] > 1 else ''} {_ms(p['p50_us'])} / "
            f"{_ms(p['p95_us'])}, {p['rps']:.0f}/s (load {p['load']})"
            for p in r["phases"]
        ]
        lines.append(
            f"- run {i}: floor {_ms(r['floor']['p50_us'])} / {_ms(r['floor']['p95_us'])}; "
            + "; ".join(parts)
        )
    lines += [
        "",
        f"Overspend run: a project hard_stop budget sized for exactly K = {results['k']} checks "
        f"(under a tenant hard_stop budget of 10 x K), 64 clients for twice that time: "
        f"{over['requests']} checks, {over['allowed']} allowed, {over['denied']} denied, "
        f"{over['other']} other answers; spent + reserved of the project budget afterwards "
        f"{project_used:g} of {results['k']}. **Overspend count: {results['overspend_count']}** "
        f"(allowed above K), budgets over their amount in the database: "
        f"{results['db_over_amount']} (goal 0).",
        "",
        "Where the time goes, what was cut, and the before/after comparison:",
        "docs/budgets-performance.md.",
        "",
    ]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    block = "\n".join(lines)
    pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block.rstrip("\n") + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    sys.exit(main())
