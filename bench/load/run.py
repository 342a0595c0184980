"""Load benchmark of the assembled service: gunicorn as the Dockerfile runs it (4 gthread
workers x 4 threads), PostgreSQL, a private Redis, a Celery worker and beat, all on this
machine, driven by wrk over loopback.

For each client count (1, 16, 64) it measures, in the same run and interleaved round by round,
the two references (a bare DRF endpoint, a minimal JWT + serializer + one EVALSHA view, both
in bench/load/views.py) and the product endpoints: the rate-limit check, the budget check,
cost recording and a summary report. Each figure is the median of ``--repeats`` runs of
``--seconds`` each. Results go to the ``## Load`` section of bench/RESULTS.md.

    .venv/bin/python -m bench.load.run --seconds 8 --repeats 3

wrk runs on the same two cores as the server, so every figure includes the load generator's
own CPU; the references pay the same tax, which is why ratios are quoted beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.system.stack import Stack, StackConfig  # noqa: E402

TENANT = "t-load"
LUA = Path(__file__).with_name("report.lua")

# This API's own limits stay ON during the benchmark (their cost is part of every request),
# set high enough that they never deny: the figures measure the path, not the 429s.
DEFAULT_API_LIMITS = json.dumps(
    {
        "budget_check": 10**9,
        "rate_limit_check": 10**9,
        "cost_record": 10**9,
        "cost_report": 10**9,
        "default": 10**9,
    },
    separators=(",", ":"),
)


@dataclass
class Scenario:
    name: str
    label: str
    path: str
    body: dict[str, Any] | None
    auth: bool = True
    method: str = "POST"


def scenarios() -> list[Scenario]:
    return [
        Scenario("bare", "reference: bare DRF endpoint", "/bench/bare", None, auth=False),
        Scenario(
            "minimal",
            "reference: JWT + serializer + one EVALSHA",
            "/bench/minimal",
            {"resource_type": "llm.tokens", "request_count": 1, "resource_key": "k1"},
        ),
        Scenario(
            "ratelimit_check",
            "POST /rate-limits/check",
            "/budget/v1/rate-limits/check",
            {"resource_type": "llm.tokens", "request_count": 1, "resource_key": "k1"},
        ),
        Scenario(
            "budget_check",
            "POST /budgets/check",
            "/budget/v1/budgets/check",
            {
                "resource_type": "llm.tokens",
                "estimated_cost": "0.0001",
                "allocated_to_type": "project",
                "allocated_to_id": "p-load",
                # Holds outlive the run: their expiry (the worker committing each hold at its
                # estimate with a signed receipt) would otherwise land in whichever scenario's
                # window comes a minute later, and blur the comparisons there.
                "hold_ttl_seconds": 3600,
            },
        ),
        Scenario(
            "cost_record",
            "POST /cost-tracking/record",
            "/budget/v1/cost-tracking/record",
            {
                "resource_type": "llm.tokens",
                "cost_amount": "0.0001",
                "attributed_to_type": "project",
                "attributed_to_id": "p-load",
                "service_name": "load",
            },
        ),
        Scenario(
            "report",
            "POST /cost-tracking/reports (summary)",
            "/budget/v1/cost-tracking/reports",
            {"report_type": "summary"},
        ),
    ]


def seed(stack: Stack) -> dict[str, str]:
    """A budget that never runs out and a policy that never denies, for tenant t-load."""
    headers = stack.headers(TENANT, ["tenant_admin", "system_architect"], sub="load-admin")
    notes: dict[str, str] = {}
    with httpx.Client(base_url=stack.api, headers=headers, timeout=10) as c:
        r = c.post(
            "/budgets",
            json={
                "budget_name": "load",
                "budget_amount": "1000000000",
                "period_type": "monthly",
                "start_date": "2020-01-01T00:00:00Z",
                "allocated_to_type": "project",
                "allocated_to_id": "p-load",
                "enforcement_action": "hard_stop",
            },
        )
        notes["budget"] = str(r.status_code)
        r = c.post(
            "/rate-limits",
            json={
                "scope_type": "tenant",
                "scope_id": TENANT,
                "resource_type": "llm.tokens",
                "limit_value": 1_000_000_000,
                "time_window_seconds": 60,
                "algorithm": "token_bucket",
            },
        )
        notes["policy"] = str(r.status_code)
        for _ in range(50):
            c.post(
                "/cost-tracking/record",
                json={"resource_type": "llm.tokens", "cost_amount": "0.01", "service_name": "s"},
            )
    return notes


TICK = os.sysconf("SC_CLK_TCK")


def _cpu_by_process() -> dict[int, tuple[int, float]]:
    """pid -> (session id, CPU seconds so far: its own and its reaped children's)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(stat.parent.name)] = (int(fields[3]), sum(map(int, fields[11:15])) / TICK)
    return found


def _database_backends(stack: Stack) -> set[int]:
    with stack.db() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return {r[0] for r in rows}


def cpu_snapshot(stack: Stack) -> dict[str, Any]:
    """CPU so far of each part of the stack: every stack process runs in a session of its own
    (gunicorn with its workers, the Celery worker with its pool, beat, redis-server); the
    PostgreSQL backends are those connected to the stack's database."""
    sessions = {
        "gunicorn": stack.gunicorn,
        "celery worker": stack.worker,
        "celery beat": stack.beat,
        "redis": stack.redis.process,
    }
    sids = {p.proc.pid: name for name, p in sessions.items() if p is not None and p.proc}
    procs = _cpu_by_process()
    totals = dict.fromkeys(sessions, 0.0)
    for sid, cpu in procs.values():
        if sid in sids:
            totals[sids[sid]] += cpu
    backends = _database_backends(stack)
    totals["postgresql"] = {pid: procs[pid][1] for pid in backends if pid in procs}
    children = os.times()
    totals["wrk"] = children.children_user + children.children_system
    return totals


def cpu_per_request(before: dict[str, Any], after: dict[str, Any], requests: int) -> dict[str, int]:
    """µs of CPU per request of each part between two snapshots (a backend that ended in
    between is left out; one that started counts whole)."""
    spent = {k: after[k] - before[k] for k in after if k != "postgresql"}
    spent["postgresql"] = sum(
        cpu - before["postgresql"].get(pid, 0.0) for pid, cpu in after["postgresql"].items()
    )
    return {k: round(v * 1e6 / max(requests, 1)) for k, v in spent.items()}


def wrk(url: str, sc: Scenario, token: str, clients: int, seconds: float) -> dict[str, Any]:
    threads = max(1, min(clients, 2))
    env = {
        **os.environ,
        "LOAD_METHOD": sc.method,
        "LOAD_BODY": json.dumps(sc.body) if sc.body is not None else "",
        "LOAD_AUTH": token if sc.auth else "",
    }
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url + sc.path,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    m = re.search(r"^WRKJSON (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"no summary from wrk:\n{out}")
    data = json.loads(m.group(1))
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    ok = sum(v for k, v in data["codes"].items() if 200 <= int(k) < 300)
    data["ok_ratio"] = ok / data["requests"] if data["requests"] else 0.0
    return data


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rps", "p50_us", "p95_us", "p99_us")
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    codes: dict[str, int] = {}
    for r in runs:
        for k, v in r["codes"].items():
            codes[k] = codes.get(k, 0) + v
    med["codes"] = codes
    med["runs"] = [round(r["rps"]) for r in runs]
    med["cpu_us"] = {k: statistics.median(r["cpu_us"][k] for r in runs) for k in runs[0]["cpu_us"]}
    return med


def ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def goals(results: dict[int, dict[str, dict[str, Any]]]) -> list[str]:
    """The issue's three goals, each with the measured figure and its references beside it."""
    out = ["Goals (issue 10), from the tables below:", ""]
    one = results.get(1, {})

    def fig(per: dict[str, dict[str, Any]], name: str, key: str) -> float | None:
        r = per.get(name)
        return None if r is None else r[key]

    for clients, per in results.items():
        rl, mini = fig(per, "ratelimit_check", "rps"), fig(per, "minimal", "rps")
        if rl is not None and mini:
            verdict = "met" if rl >= 0.8 * mini else "NOT met"
            out.append(
                f"- rate-limit check throughput >= 0.8x the minimal view at {clients} "
                f"client(s): {rl:.0f} vs {mini:.0f} req/s = {rl / mini:.3f}x — {verdict}"
            )
    bare95 = fig(one, "bare", "p95_us")
    mini95 = fig(one, "minimal", "p95_us")
    refs = (
        f" (references at 1 client: bare {ms(bare95)} ms, minimal {ms(mini95)} ms)"
        if bare95 is not None and mini95 is not None
        else ""
    )
    for name, target in (("ratelimit_check", 2.0), ("budget_check", 5.0)):
        p95 = fig(one, name, "p95_us")
        if p95 is not None:
            verdict = "met" if p95 / 1000 < target else "NOT met"
            out.append(f"- {name} p95 at 1 client < {target:g} ms: {ms(p95)} ms — {verdict}{refs}")
    out.append("")
    return out


def render(
    results: dict[int, dict[str, dict[str, Any]]],
    scs: list[Scenario],
    args: argparse.Namespace,
    api_limits: str,
    command: str,
    seed_notes: dict[str, str],
) -> str:
    lines = [
        "## Load",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{os.cpu_count()} cores ({platform.machine()}, Python {platform.python_version()}): "
        f"gunicorn {_workers(args)}, PostgreSQL 15, a private redis-server (AOF everysec), a "
        "Celery worker and beat, all on this machine; wrk on the same two cores.",
        "",
        f"- Command: `{command}`",
        f"- `API_RATE_LIMITS={api_limits}` (this API's own limit on, never denying)"
        if api_limits != "off"
        else "- `API_RATE_LIMITS=off`",
        f"- Each cell: the median of {args.repeats} runs of {args.seconds} s, scenarios "
        "interleaved round by round. Latency at 16 and 64 clients is mostly queueing "
        "(clients / throughput): read it beside the throughput.",
        f"- Seed answers (status): {seed_notes}",
        f"- Load average (1 min) before / after the run: {args.load_before:.2f} / "
        f"{os.getloadavg()[0]:.2f} — the machine is shared; anything well above 0 means other "
        "processes competed for the two cores and every figure is low.",
        "",
    ]
    lines += goals(results)
    for clients, per in results.items():
        bare = per.get("bare", {}).get("rps") or 0
        minimal = per.get("minimal", {}).get("rps") or 0
        lines += [
            f"### {clients} client{'s' if clients > 1 else ''}",
            "",
            "| endpoint | req/s | p50 ms | p95 ms | p99 ms | x bare | x minimal | 2xx share | "
            "runs (req/s) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for sc in scs:
            r = per.get(sc.name)
            if r is None:
                continue
            total = sum(r["codes"].values()) or 1
            ok = sum(v for k, v in r["codes"].items() if 200 <= int(k) < 300)
            lines.append(
                f"| {sc.label} | {r['rps']:.0f} | {ms(r['p50_us'])} | {ms(r['p95_us'])} | "
                f"{ms(r['p99_us'])} | {r['rps'] / bare:.2f} | "
                f"{(r['rps'] / minimal) if minimal else 0:.2f} | {ok / total:.3f} | "
                f"{r['runs']} |"
            )
        parts = list(next(iter(per.values()))["cpu_us"])
        lines += [
            "",
            "CPU per request (µs, from /proc, median of the runs) of each part of the stack:",
            "",
            "| endpoint | " + " | ".join(parts) + " |",
            "| --- |" + " ---: |" * len(parts),
        ]
        for sc in scs:
            r = per.get(sc.name)
            if r is not None:
                cells = " | ".join(f"{r['cpu_us'][k]:.0f}" for k in parts)
                lines.append(f"| {sc.label} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def _workers(args: argparse.Namespace) -> str:
    if args.threads > 1:
        return f"{args.workers} gthread workers x {args.threads} threads (as the Dockerfile)"
    return f"{args.workers} sync workers"


def write_section(text: str, path: Path) -> None:
    existing = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(r"^## Load\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(existing):
        updated = pattern.sub(lambda _: text.rstrip() + "\n\n", existing)
    else:
        updated = existing.rstrip() + "\n\n" + text.rstrip() + "\n"
    path.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--api-rate-limits", default=DEFAULT_API_LIMITS)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (Dockerfile: 4)")
    parser.add_argument(
        "--threads", type=int, default=4, help="per worker (Dockerfile: 4; 1: sync workers)"
    )
    parser.add_argument("--write", default=str(REPO / "bench" / "RESULTS.md"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json-out", default="", help="also save the raw medians as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    scs = scenarios()
    if args.only:
        wanted = set(args.only.split(","))
        scs = [s for s in scs if s.name in wanted]
    command = "cd /work/main && .venv/bin/python -m bench.load.run " + shlex.join(sys.argv[1:])
    stack = Stack(
        StackConfig(
            api_rate_limits=args.api_rate_limits,
            proxies=False,
            clock_offset=False,
            web_settings="bench.load.settings",
            db_prefix="sys_load",
            gunicorn_workers=args.workers,
            # The stack starts gunicorn with sync workers; gunicorn reads more options here.
            extra_env={"GUNICORN_CMD_ARGS": f"--threads {args.threads}"},
        )
    )
    results: dict[int, dict[str, dict[str, Any]]] = {}
    args.load_before = os.getloadavg()[0]
    try:
        stack.start()
        seed_notes = seed(stack)
        token = stack.token(TENANT, ["service", "tenant_admin"], sub="load-svc", ttl=86400)
        # Warm every worker: imports, connections, script loads.
        for sc in scs:
            wrk(stack.base_url, sc, token, 4, 1)
        for clients in (int(c) for c in args.clients.split(",")):
            runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in scs}
            for _ in range(args.repeats):
                for sc in scs:
                    before = cpu_snapshot(stack)
                    run = wrk(stack.base_url, sc, token, clients, args.seconds)
                    run["cpu_us"] = cpu_per_request(before, cpu_snapshot(stack), run["requests"])
                    runs[sc.name].append(run)
            results[clients] = {name: median_of(rs) for name, rs in runs.items()}
            for name, r in results[clients].items():
                print(
                    f"c={clients:>3} {name:>16}: {r['rps']:8.0f} req/s  p50 {ms(r['p50_us'])} "
                    f"p95 {ms(r['p95_us'])} p99 {ms(r['p99_us'])} ms  codes {r['codes']}",
                    flush=True,
                )
    finally:
        stack.stop()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))
    text = render(results, scs, args, args.api_rate_limits, command, seed_notes)
    print(text)
    if not args.no_write:
        write_section(text, Path(args.write))


if __name__ == "__main__":
    main()
