"""The client and `budgetctl` against the live test server: real endpoints, no mocks.

None of these needs PostgreSQL; they run on SQLite and on PostgreSQL alike.
"""

import asyncio
import csv
import io
import json
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import pytest
from budgeting_client import (
    ApprovalRequired,
    AuthenticationError,
    BudgetClient,
    BudgetDenied,
    NotFound,
    PermissionDenied,
    RateLimited,
    RetryPolicy,
    current_hold,
)
from budgeting_client.cli import cli
from click.testing import CliRunner

from tests.client.conftest import FAST, ROLES
from tests.client.proxy import DroppingProxy, drop_first

pytestmark = pytest.mark.django_db(transaction=True)

START = "2020-01-01T00:00:00Z"


def upstream(live_server):
    parsed = urlparse(live_server.url)
    return parsed.hostname, parsed.port


def make_budget(client, amount="100", action="hard_stop", **overrides):
    fields = {
        "budget_name": "client tests",
        "budget_amount": Decimal(amount),
        "period_type": "monthly",
        "start_date": START,
        "allocated_to_type": "tenant",
        "allocated_to_id": "t-acme",
        "enforcement_action": action,
        "currency": "USD",
    }
    fields.update(overrides)
    return client.create_budget(**fields)


def period(client, budget_id):
    current = client.get_budget(budget_id)["current_period"]
    return Decimal(str(current["spent_amount"])), Decimal(str(current["reserved_amount"]))


def records_of(client, resource_type):
    page = client.list_cost_records(resource_type=resource_type, page_size=1000)
    return page


def count_records(client, resource_type):
    page = client.list_cost_records(resource_type=resource_type, page_size=1)
    return page.pagination.total_count


# --- the budget helper ---------------------------------------------------------------------


def test_budgeted_block_settles_the_hold_with_the_actual_cost(client):
    budget = make_budget(client)

    with client.budgeted(resource_type="llm", estimated_cost="10") as hold:
        assert hold.reservation_id
        assert period(client, budget.budget_id) == (Decimal(0), Decimal(10))
        hold.actual_cost = Decimal("7.5")

    assert hold.recorded is not None and hold.released is False
    assert period(client, budget.budget_id) == (Decimal("7.5"), Decimal(0))
    record = client.get_cost_record(hold.recorded.record_id)
    assert Decimal(str(record["cost_amount"])) == Decimal("7.5")
    assert count_records(client, "llm") == 1


def test_budgeted_block_releases_the_hold_when_the_work_raises(client):
    budget = make_budget(client)

    with (
        pytest.raises(RuntimeError, match="model timed out"),
        client.budgeted(resource_type="llm", estimated_cost="10") as hold,
    ):
        assert period(client, budget.budget_id) == (Decimal(0), Decimal(10))
        raise RuntimeError("model timed out")

    assert hold.released is True and hold.recorded is None
    assert period(client, budget.budget_id) == (Decimal(0), Decimal(0))
    assert count_records(client, "llm") == 0


def test_a_denied_check_raises_with_the_check_and_holds_nothing(client):
    budget = make_budget(client, amount="100")
    ran = []

    with (
        pytest.raises(BudgetDenied) as caught,
        client.budgeted(resource_type="llm", estimated_cost="150"),
    ):
        ran.append(True)

    assert ran == []
    denied = caught.value.check
    assert (denied.allowed, denied.reason, denied.budget_id) == (
        False,
        "BUDGET_EXCEEDED",
        budget.budget_id,
    )
    assert denied.reservation_id is None
    assert period(client, budget.budget_id) == (Decimal(0), Decimal(0))
    assert count_records(client, "llm") == 0


def test_decorator_records_the_cost_the_function_reports(client):
    budget = make_budget(client)

    @client.budgeted(
        resource_type="llm",
        estimated_cost=lambda prompt: Decimal(len(prompt)),
        cost_from_result=lambda answer: answer["cost"],
    )
    def ask(prompt):
        assert current_hold().estimated_cost == Decimal(len(prompt))
        return {"text": prompt.upper(), "cost": Decimal("2.25")}

    @client.budgeted(resource_type="llm", estimated_cost="5")
    def broken():
        raise ValueError("boom")

    assert ask("twelve chars")["text"] == "TWELVE CHARS"
    with pytest.raises(ValueError):
        broken()
    assert period(client, budget.budget_id) == (Decimal("2.25"), Decimal(0))


def test_async_helper_settles_and_releases(client, async_client_factory):
    budget = make_budget(client)

    async def main():
        async with async_client_factory() as aclient:
            async with aclient.budgeted(resource_type="llm", estimated_cost="4") as hold:
                hold.actual_cost = "3"
            with pytest.raises(KeyError):
                async with aclient.budgeted(resource_type="llm", estimated_cost="4"):
                    raise KeyError("x")

            @aclient.budgeted(resource_type="llm", estimated_cost="1", cost_from_result=len)
            async def work(items):
                return items

            await work([1, 2])

    asyncio.run(main())
    assert period(client, budget.budget_id) == (Decimal(5), Decimal(0))


# --- retries after a dropped connection ----------------------------------------------------


def test_a_retried_record_after_a_dropped_connection_records_once(live_server, token):
    proxy = DroppingProxy(upstream(live_server), drop_first("POST", "/cost-tracking/record"))
    with proxy, BudgetClient(proxy.url, token=token, retry=FAST, timeout=60) as through_proxy:
        result = through_proxy.record_cost(
            resource_type="proxy-gpu", cost_amount=Decimal("12.34"), resource_id="job-1"
        )

    posts = [s for s in proxy.seen if s.method == "POST"]
    assert [s.dropped for s in posts] == [True, False]
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert result.meta.attempts == 2
    assert result.meta.replayed is True  # the second attempt got the first answer back
    with BudgetClient(live_server.url, token=token) as direct:
        page = direct.list_cost_records(resource_type="proxy-gpu")
        assert [r["record_id"] for r in page.items] == [result.record_id]
        assert Decimal(str(page.extra["aggregated"]["total_cost"])) == Decimal("12.34")


def test_budget_helper_through_dropped_connections_holds_and_records_once(live_server, token):
    # Lose the answer of the check and of the settling record: each is retried with its key.
    drop_check = drop_first("POST", "/budgets/check")
    drop_record = drop_first("POST", "/cost-tracking/record")
    proxy = DroppingProxy(upstream(live_server), lambda s: drop_check(s) or drop_record(s))
    with BudgetClient(live_server.url, token=token) as direct:
        budget = make_budget(direct)
        with (
            proxy,
            BudgetClient(proxy.url, token=token, retry=FAST, timeout=60) as flaky,
            flaky.budgeted(resource_type="llm", estimated_cost="10") as hold,
        ):
            # one hold, not two, although the check was sent twice
            assert period(direct, budget.budget_id) == (Decimal(0), Decimal(10))
            hold.actual_cost = "6"
        assert [s.dropped for s in proxy.seen if s.method == "POST"] == [
            True,
            False,
            True,
            False,
        ]
        assert period(direct, budget.budget_id) == (Decimal(6), Decimal(0))
        assert count_records(direct, "llm") == 1


# --- budgetctl -----------------------------------------------------------------------------


def run(cli_env, *args):
    return CliRunner().invoke(cli, list(args), env=cli_env, catch_exceptions=False)


def bulk_file(path, count, bad_lines=()):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["resource_type", "cost_amount", "service_name", "timestamp", "tag:batch"])
        for i in range(count):
            cost = "not-a-number" if i in bad_lines else f"{(i % 100) + 1}.{i % 7:02d}"
            writer.writerow(["bulk-gpu", cost, f"svc-{i % 5}", "2025-03-01T12:00:00Z", "b1"])
    return sum(Decimal(f"{(i % 100) + 1}.{i % 7:02d}") for i in range(count) if i not in bad_lines)


def test_cli_bulk_record_of_10000_lines_counts_and_records_each_once(client, cli_env, tmp_path):
    path = tmp_path / "costs.csv"
    bad = {17, 5003}
    expected_total = bulk_file(path, 10_000, bad_lines=bad)

    first = run(cli_env, "record", "--file", str(path), "--progress", "--json")
    summary = json.loads(first.stdout)
    assert first.exit_code == 1  # some lines failed
    assert (summary["total"], summary["created"], summary["duplicate"], summary["failed"]) == (
        10_000,
        9_998,
        0,
        2,
    )
    assert [f["line"] for f in summary["failures"]] == [19, 5005]  # header is line 1
    assert {f["error_code"] for f in summary["failures"]} == {"VALIDATION_ERROR"}
    assert "recording" in first.stderr  # the progress bar
    page = client.list_cost_records(resource_type="bulk-gpu", page_size=1)
    assert page.pagination.total_count == 9_998
    assert Decimal(str(page.extra["aggregated"]["total_cost"])) == expected_total

    again = run(cli_env, "record", "--file", str(path))
    assert again.exit_code == 1
    assert "lines: 10000  created: 0  duplicate: 9998  failed: 2" in again.stdout
    assert "line 19: VALIDATION_ERROR" in again.stdout
    page = client.list_cost_records(resource_type="bulk-gpu", page_size=1)
    assert page.pagination.total_count == 9_998


def test_verify_receipts_finds_a_tampered_receipt(client, cli_env, tmp_path):
    for i in range(3):
        client.record_cost(resource_type="rcpt", cost_amount=Decimal(i + 1))
    receipts = [dict(r) for r in client.iter_receipts(gate_id="cost-tracking")]
    assert len(receipts) == 3
    assert all(client.verify_receipt(r).valid for r in receipts)

    tampered = json.loads(json.dumps(receipts))
    tampered[1]["inputs"]["cost_amount"] = "0.0000000001"
    path = tmp_path / "receipts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tampered))

    result = run(cli_env, "verify-receipts", str(path))
    assert result.exit_code == 1
    invalid = [line for line in result.stdout.splitlines() if line.startswith("INVALID")]
    assert invalid == [f"INVALID {tampered[1]['receipt_id']}  bad_signature  ({path}:2)"]
    assert "checked: 3  valid: 2  invalid: 1" in result.stdout

    # the untouched receipts straight from the service all verify
    from_service = run(cli_env, "verify-receipts")
    assert from_service.exit_code == 0, from_service.output
    assert "invalid: 0" in from_service.stdout

    # fully offline, with a saved key set
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(dict(client.get_receipt_keys())))
    offline = run(
        {**cli_env, "BUDGET_URL": "http://127.0.0.1:9"},
        "verify-receipts",
        "--keys",
        str(keys),
        str(path),
    )
    assert offline.exit_code == 1
    assert "checked: 3  valid: 2  invalid: 1" in offline.stdout


def test_cli_check_allowed_and_denied(client, cli_env):
    make_budget(client, amount="100")
    allowed = run(cli_env, "check", "--resource-type", "llm", "--estimated-cost", "40")
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stdout.startswith("ALLOWED (dry run)")
    denied = run(cli_env, "check", "--resource-type", "llm", "--estimated-cost", "400", "--json")
    assert denied.exit_code == 3
    body = json.loads(denied.stdout)
    assert (body["allowed"], body["reason"]) == (False, "BUDGET_EXCEEDED")


def test_cli_alerts_list_and_acknowledge(client, cli_env):
    budget = make_budget(client, amount="100", action="soft_limit")
    client.record_cost(resource_type="llm", cost_amount=Decimal("85"))
    listed = run(cli_env, "alerts", "list", "--json")
    assert listed.exit_code == 0, listed.output
    alerts = [a for a in json.loads(listed.stdout) if a["resource_id"] == budget.budget_id]
    assert [(a["alert_type"], a["status"]) for a in alerts] == [
        ("budget_threshold_exceeded", "active")
    ]
    table = run(cli_env, "alerts", "list", "--status", "active")
    assert alerts[0]["alert_id"] in table.stdout

    acked = run(cli_env, "alerts", "ack", alerts[0]["alert_id"])
    assert acked.exit_code == 0, acked.output
    assert client.get_alert(alerts[0]["alert_id"])["status"] == "acknowledged"
    missing = run(cli_env, "alerts", "ack", "00000000-0000-0000-0000-000000000000")
    assert missing.exit_code == 1 and "NOT_FOUND" in missing.stderr


def test_cli_report_as_table_and_csv(client, cli_env):
    for service, cost in (("search", "1.10"), ("search", "2.20"), ("chat", "0.70")):
        client.record_cost(
            resource_type="rpt",
            cost_amount=Decimal(cost),
            service_name=service,
            timestamp="2025-02-10T00:00:00Z",
        )
    args = ["report", "--type", "by_service", "--start", "2025-02-01", "--end", "2025-03-01"]
    shown = run(cli_env, *args)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0] == ("report: by_service  period: 2025-02-01T00:00:00Z .. 2025-03-01T00:00:00Z")
    total_line = lines[1].split()
    assert (total_line[0], Decimal(total_line[1]), total_line[2]) == ("total:", Decimal(4), "USD")
    assert lines[3].split() == [
        "service_name",
        "total_cost",
        "usage_quantity",
        "record_count",
        "share",
    ]
    rows = {line.split()[0]: line.split() for line in lines[5:]}
    assert {name: Decimal(row[1]) for name, row in rows.items()} == {
        "search": Decimal("3.30"),
        "chat": Decimal("0.70"),
    }

    exported = run(cli_env, *args, "--format", "csv")
    assert exported.exit_code == 0, exported.output
    table = list(csv.DictReader(io.StringIO(exported.stdout)))
    by_service = {row["service_name"]: Decimal(row["total_cost"]) for row in table}
    assert by_service == {"search": Decimal("3.30"), "chat": Decimal("0.70")}


def test_console_script_runs_against_the_live_server(client, cli_env):
    make_budget(client)
    result = subprocess.run(
        [
            # the console script `pip install ./client` puts beside the interpreter
            str(Path(sys.executable).parent / "budgetctl"),
            "check",
            "--resource-type",
            "llm",
            "--estimated-cost",
            "1",
        ],
        env={**cli_env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ALLOWED (dry run)")


# --- endpoints that are already there --------------------------------------------------------


def test_quota_allocation_retried_after_a_dropped_connection_allocates_once(live_server, token):
    proxy = DroppingProxy(upstream(live_server), drop_first("POST", "/quotas/allocate"))
    with proxy, BudgetClient(proxy.url, token=token, retry=FAST, timeout=60) as flaky:
        quota = flaky.allocate_quota(
            resource_type="gpu-hours",
            allocated_amount=100,
            period_start="2025-01-01T00:00:00Z",
            period_end="2025-02-01T00:00:00Z",
        )
    assert quota.meta.attempts == 2 and quota.meta.replayed is True
    with BudgetClient(live_server.url, token=token) as direct:
        quotas = direct.list_quotas(resource_type="gpu-hours")
        assert [q["quota_id"] for q in quotas.items] == [quota["quota_id"]]
        with pytest.raises(NotFound) as caught:
            direct.get_quota("00000000-0000-0000-0000-000000000000")
        assert caught.value.correlation_id


def test_an_escalated_check_raises_approval_required_with_the_approval(client):
    budget = make_budget(client, amount="100", action="escalate")
    with (
        pytest.raises(ApprovalRequired) as caught,
        client.budgeted(resource_type="llm", estimated_cost="150"),
    ):
        pytest.fail("the work must not run")
    assert caught.value.requires_approval is True
    assert caught.value.budget_id == budget.budget_id
    approval = client.get_approval(caught.value.approval_id)
    assert (approval["status"], approval["kind"]) == ("pending", "budget_overrun")
    assert period(client, budget.budget_id) == (Decimal(0), Decimal(0))


def test_rate_limit_headers_are_exposed_and_a_429_is_typed(live_server, make_token, settings):
    settings.API_RATE_LIMITS = {
        "budget_check": 20000,
        "rate_limit_check": 50000,
        "cost_record": 2,
        "cost_report": 100,
        "default": 1000,
    }
    # a tenant of its own: the limiter's state outlives the test database
    tenant = f"t-rl-{uuid.uuid4().hex[:12]}"
    token = make_token(tenant, ROLES)
    with BudgetClient(live_server.url, token=token, retry=RetryPolicy(max_retries=0)) as c:
        first = c.record_cost(resource_type="gpu", cost_amount=1)
        second = c.record_cost(resource_type="gpu", cost_amount=1)
        with pytest.raises(RateLimited) as caught:
            c.record_cost(resource_type="gpu", cost_amount=1)
        total = c.list_cost_records(resource_type="gpu").pagination.total_count
    assert (first.meta.rate_limit.limit, first.meta.rate_limit.window_seconds) == (2, 60)
    assert (first.meta.rate_limit.remaining, second.meta.rate_limit.remaining) == (1, 0)
    assert first.meta.rate_limit.policy == "cost_record"
    assert first.meta.rate_limit.reset_at > 0
    exc = caught.value
    assert (exc.status, exc.error_code, exc.retriable) == (429, "RATE_LIMIT_VIOLATED", True)
    assert exc.retry_after >= 1 and exc.correlation_id
    assert total == 2


def test_cli_uses_a_profile_and_records_one_cost(client, live_server, token, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[live]\nurl = "{live_server.url}"\ntoken = "{token}"\n')
    config.chmod(0o600)
    env = {"BUDGETCTL_CONFIG": str(config), "BUDGET_URL": "http://127.0.0.1:9", "BUDGET_TOKEN": ""}
    result = run(
        env,
        "--profile",
        "live",
        "record",
        "--resource-type",
        "one",
        "--cost",
        "2.50",
        "--tag",
        "team=ml",
        "--idempotency-key",
        "cli-one-1",
    )
    assert result.exit_code == 0, result.output
    again = run(
        env,
        "--profile",
        "live",
        "record",
        "--resource-type",
        "one",
        "--cost",
        "2.50",
        "--tag",
        "team=ml",
        "--idempotency-key",
        "cli-one-1",
    )
    assert "replayed" in again.stdout
    records = client.list_cost_records(resource_type="one").items
    assert [(Decimal(str(r["cost_amount"])), r["tags"]) for r in records] == [
        (Decimal("2.50"), {"team": "ml"})
    ]
    unknown = run(env, "--profile", "nope", "alerts", "list")
    assert unknown.exit_code == 2 and "no profile [nope]" in unknown.stderr


def test_api_key_authentication_and_typed_auth_errors(live_server, tenant):
    from budgeting_site.platform.services import create_api_key

    _, plaintext = create_api_key(
        tenant_id=tenant, name="client-test", roles=["auditor"], created_by="test"
    )
    with BudgetClient(live_server.url, api_key=plaintext, retry=FAST) as keyed:
        assert keyed.list_alerts().items == []
        with pytest.raises(PermissionDenied) as forbidden:  # auditors cannot record
            keyed.record_cost(resource_type="gpu", cost_amount=1)
        assert forbidden.value.error_code == "FORBIDDEN"
        health = keyed.health()
        assert health.meta.status_code in (200, 503) and health["status"] in ("UP", "DEGRADED")
    with BudgetClient(live_server.url, api_key="bogus", retry=FAST) as anonymous:
        with pytest.raises(AuthenticationError) as unauthorized:
            anonymous.list_alerts()
        assert (unauthorized.value.status, unauthorized.value.error_code) == (401, "UNAUTHORIZED")


def test_a_tour_of_every_endpoint_family(client):
    """Each method reaches its endpoint and reads the answer it gets (paths, item keys)."""
    assert client.health()["status"] in ("UP", "DEGRADED")
    assert "budget_check_duration_seconds" in client.metrics()

    # budgets, holds, utilization
    budget = make_budget(client, amount="100")
    assert [b.budget_id for b in client.iter_budgets(allocated_to_type="tenant")] == [
        budget.budget_id
    ]
    updated = client.update_budget(
        budget.budget_id,
        {
            k: budget[k]
            for k in (
                "budget_name",
                "budget_amount",
                "period_type",
                "start_date",
                "allocated_to_type",
                "allocated_to_id",
                "enforcement_action",
                "currency",
            )
        }
        | {"budget_amount": "200"},
        version=budget["version"],
    )
    assert Decimal(str(updated["budget_amount"])) == Decimal(200)
    held = client.check_budget(resource_type="llm", estimated_cost="5")
    assert client.get_reservation(held.reservation_id)["reservation_id"] == held.reservation_id
    client.extend_reservation(held.reservation_id, hold_ttl_seconds=600)
    client.commit_reservation(held.reservation_id, actual_cost="4")
    assert period(client, budget.budget_id) == (Decimal(4), Decimal(0))
    batch = client.check_budget_batch(
        [{"resource_type": "llm", "estimated_cost": "1", "dry_run": True}] * 2
    )
    assert batch.allowed and len(batch.results) == 2
    assert client.get_budget_utilization(budget.budget_id).items
    assert client.list_approvals(status="pending").items == []

    # rate limits
    policy = client.create_rate_limit_policy(
        resource_type="api", limit_value=2, time_window_seconds=60, algorithm="fixed_window"
    )
    assert [p["policy_id"] for p in client.list_rate_limit_policies().items] == [
        policy["policy_id"]
    ]
    verdicts = [client.check_rate_limit(resource_type="api").allowed for _ in range(3)]
    assert verdicts == [True, True, False]
    client.update_rate_limit_policy(
        policy["policy_id"],
        {"resource_type": "api", "limit_value": 5, "time_window_seconds": 60},
        version=client.get_rate_limit_policy(policy["policy_id"])["version"],
    )
    client.delete_rate_limit_policy(policy["policy_id"])
    with pytest.raises(NotFound):
        client.get_rate_limit_policy(policy["policy_id"])

    # costs
    recorded = client.record_cost(resource_type="tour", cost_amount="3")
    reversal = client.reverse_cost(recorded.record_id, reason="wrong project")
    assert reversal
    assert len(list(client.iter_cost_records(resource_type="tour"))) == 2
    allocation = client.create_allocation(
        cost_amount="9",
        resource_type="shared",
        rule="equal",
        targets=[
            {"attributed_to_type": "project", "attributed_to_id": "a", "weight": 1},
            {"attributed_to_type": "project", "attributed_to_id": "b", "weight": 1},
        ],
    )
    assert len(allocation["record_ids"]) == 2
    assert client.list_anomalies().items == []
    batch_result = client.record_costs_batch(
        [{"resource_type": "tour-b", "cost_amount": "1", "idempotency_key": "tour-1"}] * 2
    )
    assert [r.status for r in batch_result.results] == ["created", "duplicate"]

    # quotas
    quota = client.allocate_quota(resource_type="q", allocated_amount=10)
    assert client.consume_quota(resource_type="q", amount=4).used_amount == Decimal(4)
    assert client.check_quota(resource_type="q", amount=7).allowed is False
    client.update_quota(quota["quota_id"], allocated_amount=20)
    assert Decimal(str(client.get_quota(quota["quota_id"])["allocated_amount"])) == Decimal(20)

    # receipts
    receipt = client.get_receipt(recorded.receipt_id)
    assert client.verify_receipt(receipt).valid
    assert client.verify_receipt_remote(receipt)["valid"] is True

    # subscriptions and alerts
    sub = client.create_subscription(
        event_types=["budget_threshold_exceeded"], webhook_url="https://hooks.example.com/x"
    )
    assert sub["signing_secret"].startswith("whsec_")
    client.update_subscription(sub["subscription_id"], enabled=False)
    assert client.get_subscription(sub["subscription_id"])["enabled"] is False
    assert [s["subscription_id"] for s in client.list_subscriptions().items] == [
        sub["subscription_id"]
    ]
    assert client.list_deliveries(sub["subscription_id"]).items == []
    client.delete_subscription(sub["subscription_id"])
    assert client.list_alerts(severity="critical").items == []
