"""`budgetctl`: the service from a terminal.

Exit codes: 0 success; 1 a failure (an API or connection error, failed lines, invalid
receipts); 2 a usage error; 3 a budget check that was denied.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

import click

from budgeting_client import bulk
from budgeting_client import receipts as receipt_tools
from budgeting_client._base import RetryPolicy
from budgeting_client._sync.client import BudgetClient
from budgeting_client._sync.receipts import ReceiptVerifier
from budgeting_client._version import __version__
from budgeting_client.config import ConfigError, Settings, resolve
from budgeting_client.errors import ApiError, BudgetClientError, TransportError

EXIT_FAILURE = 1
EXIT_DENIED = 3


# --- plumbing --------------------------------------------------------------------------------


class Context:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self._client: BudgetClient | None = None

    def settings(self) -> Settings:
        o = self.options
        try:
            return resolve(
                url=o["url"],
                token=o["token"],
                api_key=o["api_key"],
                timeout=o["timeout"],
                profile=o["profile"],
                config=o["config"],
            )
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc

    def client(self) -> BudgetClient:
        if self._client is None:
            settings = self.settings()
            retry = RetryPolicy(max_retries=self.options["retries"])
            kwargs: dict[str, Any] = {"token": settings.token, "api_key": settings.api_key}
            if settings.timeout is not None:
                kwargs["timeout"] = settings.timeout
            self._client = BudgetClient(
                settings.url, retry=retry, user_agent=f"budgetctl/{__version__}", **kwargs
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


pass_ctx = click.make_pass_decorator(Context)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, default=_json_default, sort_keys=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=_json_default, sort_keys=True)
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain, aligned text table (numbers right-aligned)."""
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [
        all(_is_number(r[i]) or r[i] == "" for r in cells) and bool(cells)
        for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def _pairs(values: Iterable[str], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=what)
        out[key] = value
    return out


def _amount(_ctx: Any, _param: Any, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise click.BadParameter(f"{value!r} is not a number") from None
    if not amount.is_finite():
        raise click.BadParameter(f"{value!r} is not a number")
    return amount


def run_api(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn client errors into one line on stderr and exit code 1."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ApiError as exc:
            fail(str(exc))
        except TransportError as exc:
            fail(f"no answer from the service after {exc.attempts} attempt(s): {exc}")
        except BudgetClientError as exc:
            fail(str(exc))

    return wrapper


# --- the command group -----------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", help="Service URL (env BUDGET_URL).")
@click.option("--token", help="JWT (env BUDGET_TOKEN).")
@click.option("--api-key", help="API key (env BUDGET_API_KEY).")
@click.option("--profile", help="Profile of the profile file (env BUDGET_PROFILE).")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    help="Profile file (env BUDGETCTL_CONFIG; default ~/.config/budgetctl/config.toml).",
)
@click.option("--timeout", type=float, help="Seconds per request (env BUDGET_TIMEOUT).")
@click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True)
@click.version_option(__version__, prog_name="budgetctl")
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    """Budgets, costs, receipts and alerts of the budgeting service, from a terminal."""
    context = Context(options)
    ctx.obj = context
    ctx.call_on_close(context.close)


# --- check -----------------------------------------------------------------------------------


@cli.command()
@click.option("--resource-type", required=True)
@click.option("--estimated-cost", required=True, callback=_amount)
@click.option("--currency")
@click.option("--allocated-to-type", type=click.Choice(["tenant", "project", "user", "feature"]))
@click.option("--allocated-to-id")
@click.option("--context", "context_pairs", multiple=True, help="operation_context KEY=VALUE.")
@click.option("--approval-id")
@click.option(
    "--hold/--dry-run",
    default=False,
    help="Place a real hold (it is committed at its estimate when it expires) or only "
    "evaluate (the default).",
)
@click.option("--hold-ttl", type=click.IntRange(1, 86400), help="Seconds the hold lives.")
@click.option("--json", "as_json", is_flag=True, help="Print the check response as JSON.")
@pass_ctx
@run_api
def check(
    obj: Context,
    resource_type: str,
    estimated_cost: Decimal,
    currency: str | None,
    allocated_to_type: str | None,
    allocated_to_id: str | None,
    context_pairs: tuple[str, ...],
    approval_id: str | None,
    hold: bool,
    hold_ttl: int | None,
    as_json: bool,
) -> None:
    """Ask whether spending ESTIMATED-COST is within budget (POST /budgets/check)."""
    result = obj.client().check_budget(
        resource_type=resource_type,
        estimated_cost=estimated_cost,
        currency=currency,
        allocated_to_type=allocated_to_type,
        allocated_to_id=allocated_to_id,
        operation_context=_pairs(context_pairs, "--context") or None,
        approval_id=approval_id,
        dry_run=not hold,
        hold_ttl_seconds=hold_ttl,
    )
    if as_json:
        click.echo(_dump(result.raw))
    else:
        verdict = "ALLOWED" if result.allowed else "DENIED"
        click.echo(f"{verdict}{'' if hold else ' (dry run)'}")
        for label, value in (
            ("reason", result.reason),
            ("message", result.message),
            ("budget_id", result.budget_id),
            ("remaining_budget", result.remaining_budget),
            ("utilization_percent", result.utilization_percent),
            ("enforcement_action", result.enforcement_action),
            ("throttle_factor", result.throttle_factor),
            ("requires_approval", result.requires_approval or None),
            ("approval_id", result.approval_id),
            ("reservation_id", result.reservation_id),
            ("reservation_expires_at", result.reservation_expires_at),
            ("receipt_id", result.receipt_id),
            ("correlation_id", result.correlation_id),
        ):
            if value is not None:
                click.echo(f"  {label}: {_fmt(value)}")
        if result.applied_budgets:
            click.echo(
                table(
                    result.applied_budgets,
                    [
                        "budget_id",
                        "allocated_to_type",
                        "remaining_budget",
                        "utilization_ratio",
                        "enforcement_action",
                        "over",
                    ],
                )
            )
    if not result.allowed:
        raise SystemExit(EXIT_DENIED)


# --- record ----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--file",
    "file_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Record every line of a CSV (header row) or JSON-lines file.",
)
@click.option("--format", "file_format", type=click.Choice(["csv", "jsonl"]))
@click.option(
    "--batch-size",
    type=click.IntRange(1, bulk.MAX_BATCH),
    default=bulk.MAX_BATCH,
    show_default=True,
)
@click.option(
    "--key-namespace",
    default="",
    help="Mixed into every derived idempotency key: give files whose lines carry no "
    "timestamp a namespace of their own (e.g. the export's date).",
)
@click.option("--progress/--no-progress", default=None, help="Default: on when stderr is a tty.")
@click.option(
    "--failures-out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write every failed line as JSON lines.",
)
@click.option("--resource-type")
@click.option("--cost", "cost_amount", callback=_amount)
@click.option("--currency")
@click.option("--usage-quantity", callback=_amount)
@click.option("--usage-unit")
@click.option("--resource-id")
@click.option("--service-name")
@click.option("--attributed-to-type", type=click.Choice(["tenant", "project", "user", "feature"]))
@click.option("--attributed-to-id")
@click.option("--region")
@click.option("--tag", "tag_pairs", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--timestamp", help="RFC 3339 (default: now).")
@click.option("--reservation-id", help="The hold this cost settles.")
@click.option("--idempotency-key", help="Default: a new one per call.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@run_api
def record(
    obj: Context,
    file_path: str | None,
    file_format: str | None,
    batch_size: int,
    key_namespace: str,
    progress: bool | None,
    failures_out: str | None,
    tag_pairs: tuple[str, ...],
    idempotency_key: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Record one cost, or every line of a file in batches of up to 1000.

    A file's lines get idempotency keys derived from their content, so running the same file
    again never records a line twice (those lines are reported as duplicates).
    """
    if file_path:
        given = [k for k, v in fields.items() if v is not None] + (["tag"] if tag_pairs else [])
        if given or idempotency_key:
            raise click.UsageError("--file cannot be combined with single-record options")
        _record_file(
            obj, file_path, file_format, batch_size, key_namespace, progress, failures_out, as_json
        )
        return
    if not fields["resource_type"]:
        raise click.UsageError("--resource-type is required (or --file)")
    if fields["cost_amount"] is None and fields["usage_quantity"] is None:
        raise click.UsageError("--cost or --usage-quantity is required")
    result = obj.client().record_cost(
        **fields, tags=_pairs(tag_pairs, "--tag") or None, idempotency_key=idempotency_key
    )
    if as_json:
        click.echo(_dump(result.raw))
        return
    replay = " (replayed: already recorded with this key)" if result.meta.replayed else ""
    click.echo(f"recorded {result.record_id}{replay}")
    click.echo(f"  cost_amount: {_fmt(result.cost_amount)}")
    click.echo(f"  receipt_id: {result.receipt_id}")


def _record_file(
    obj: Context,
    file_path: str,
    file_format: str | None,
    batch_size: int,
    key_namespace: str,
    progress: bool | None,
    failures_out: str | None,
    as_json: bool,
) -> None:
    fmt = bulk.detect_format(file_path, file_format)
    try:
        lines = bulk.read_lines(file_path, fmt)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file_path}: {exc}")
    bulk.assign_keys(lines, key_namespace)
    untimed = sum(
        1 for line in lines if line.record is not None and not line.record.get("timestamp")
    )
    if untimed and not key_namespace:
        click.echo(
            f"note: {untimed} line(s) carry no timestamp; identical lines in another file would "
            "be taken for the same records (see --key-namespace)",
            err=True,
        )
    client = obj.client()
    show = sys.stderr.isatty() if progress is None else progress
    if show:
        with click.progressbar(
            length=len(lines), label="recording", file=sys.stderr, show_pos=True
        ) as bar:
            summary = bulk.record_file(client, lines, batch_size=batch_size, on_progress=bar.update)
    else:
        summary = bulk.record_file(client, lines, batch_size=batch_size)
    if failures_out:
        with open(failures_out, "w", encoding="utf-8") as out:
            for failure in summary.failures:
                out.write(json.dumps(failure.as_dict()) + "\n")
    if as_json:
        click.echo(_dump(summary.as_dict()))
    else:
        click.echo(
            f"lines: {summary.total}  created: {summary.created}  "
            f"duplicate: {summary.duplicate}  failed: {summary.failed}"
        )
        if summary.failures:
            shown = summary.failures[:20]
            click.echo(f"failures ({len(summary.failures)}, first {len(shown)} shown):")
            for failure in shown:
                click.echo(f"  line {failure.line}: {failure.error_code}: {failure.message}")
        if summary.aborted:
            click.echo(f"stopped early: {summary.aborted}", err=True)
    if summary.failed or summary.aborted:
        raise SystemExit(EXIT_FAILURE)


# --- report ----------------------------------------------------------------------------------

REPORT_TYPES = [
    "summary",
    "detailed",
    "by_resource",
    "by_service",
    "by_user",
    "by_project",
    "by_feature",
    "by_region",
    "by_tag",
    "by_time_period",
]
MEASURES = ("total_cost", "usage_quantity", "record_count", "share")


@cli.command()
@click.option("--type", "report_type", type=click.Choice(REPORT_TYPES), default="summary")
@click.option("--start", "start_time", help="RFC 3339 instant or a date.")
@click.option("--end", "end_time", help="RFC 3339 instant or a date (exclusive).")
@click.option("--group-by", help="Comma-separated dimensions (replace the type's own).")
@click.option("--currency")
@click.option("--tag-key", help="For --type by_tag.")
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table"
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True))
@pass_ctx
@run_api
def report(
    obj: Context,
    report_type: str,
    start_time: str | None,
    end_time: str | None,
    group_by: str | None,
    currency: str | None,
    tag_key: str | None,
    output_format: str,
    output: str | None,
) -> None:
    """A cost report: a table in the terminal, or CSV / JSON."""
    groups = [g.strip() for g in group_by.split(",") if g.strip()] if group_by else None
    args: dict[str, Any] = {
        "report_type": report_type,
        "start_time": start_time,
        "end_time": end_time,
        "group_by": groups,
        "currency": currency,
        "tag_key": tag_key,
    }
    client = obj.client()
    if output_format == "csv":
        text = client.cost_report_csv(**args)
    else:
        data = client.cost_report(**args)
        text = _dump(dict(data)) if output_format == "json" else render_report(data)
    if output:
        Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        click.echo(f"written {output}", err=True)
    else:
        click.echo(text.rstrip("\n"))


def render_report(data: Mapping[str, Any]) -> str:
    breakdown = list(data.get("breakdown") or [])
    dimensions: list[str] = []
    for row in breakdown:
        for key in row:
            if key not in MEASURES and key not in dimensions:
                dimensions.append(key)
    period = data.get("period") or {}
    if isinstance(period, Mapping):
        start = period.get("start_time", period.get("start")) or ""
        end = period.get("end_time", period.get("end")) or ""
        period_text = f"{start} .. {end}"
    else:
        period_text = str(period)
    head = [
        f"report: {data.get('report_type')}  period: {period_text}",
        f"total: {_fmt(data.get('total_cost'))} {data.get('currency') or ''}".rstrip(),
        "",
    ]
    columns = [*dimensions, *[m for m in MEASURES if any(m in r for r in breakdown)]]
    body = table(breakdown, columns) if breakdown else "(no costs in this period)"
    return "\n".join([*head, body])


# --- verify-receipts -------------------------------------------------------------------------


@cli.command("verify-receipts")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A saved GET /receipts/keys document: verify with no network at all.",
)
@click.option("--gate-id", help="Without FILES: only receipts of this gate.")
@click.option("--decision", help="Without FILES: only receipts with this decision status.")
@click.option("--since", help="Without FILES: receipts from this instant.")
@click.option("--until", help="Without FILES: receipts before this instant.")
@click.option("--limit", type=click.IntRange(min=1), help="Without FILES: at most this many.")
@click.option("--verbose", "-v", is_flag=True, help="List the valid receipts too.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@run_api
def verify_receipts(
    obj: Context,
    files: tuple[str, ...],
    keys_file: str | None,
    gate_id: str | None,
    decision: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Verify receipts offline: signature (Ed25519 over RFC 8785) and snapshot hash.

    Reads FILES (a receipt, a JSON array, a saved list page or JSON lines; '-' for stdin), or
    without FILES fetches the tenant's receipts. Keys come from --keys, else from the
    service's public GET /receipts/keys (fetched once, again for an unknown kid). Exits 1 when
    any receipt is invalid.
    """
    if keys_file:
        try:
            document = json.loads(Path(keys_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            fail(f"cannot read keys from {keys_file}: {exc}")
        verifier = ReceiptVerifier(keys=document if isinstance(document, dict) else {})
    else:
        verifier = obj.client().receipt_verifier

    findings: list[dict[str, Any]] = []
    for where, item in _receipt_source(obj, files, gate_id, decision, since, until, limit):
        if isinstance(item, str):
            findings.append(
                {
                    "where": where,
                    "receipt_id": None,
                    "valid": False,
                    "reason": "malformed",
                    "detail": item,
                }
            )
            continue
        verdict = verifier.verify(item)
        findings.append(
            {
                "where": where,
                "receipt_id": verdict.receipt_id,
                "valid": verdict.valid,
                "reason": verdict.reason,
                "kid": verdict.kid,
            }
        )
    invalid = [f for f in findings if not f["valid"]]
    if as_json:
        click.echo(
            _dump(
                {
                    "checked": len(findings),
                    "valid": len(findings) - len(invalid),
                    "invalid": len(invalid),
                    "results": findings,
                }
            )
        )
    else:
        for finding in findings:
            if finding["valid"] and not verbose:
                continue
            label = "ok     " if finding["valid"] else "INVALID"
            click.echo(
                f"{label} {finding['receipt_id'] or '-'}  {finding['reason']}  ({finding['where']})"
            )
        click.echo(
            f"checked: {len(findings)}  valid: {len(findings) - len(invalid)}  "
            f"invalid: {len(invalid)}"
        )
    if invalid:
        raise SystemExit(EXIT_FAILURE)


def _receipt_source(
    obj: Context,
    files: tuple[str, ...],
    gate_id: str | None,
    decision: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
) -> Iterable[tuple[str, Any]]:
    if files:
        for name in files:
            try:
                text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                fail(f"cannot read {name}: {exc}")
            for position, item in receipt_tools.read_receipts(text):
                if not isinstance(item, (dict, str)):
                    item = "not a JSON object"
                yield f"{name}:{position}", item
        return
    receipts = obj.client().iter_receipts(
        gate_id=gate_id, decision=decision, start_time=since, end_time=until
    )
    for count, item in enumerate(receipts, start=1):
        if limit is not None and count > limit:
            return
        yield f"service #{count}", dict(item)


# --- alerts ----------------------------------------------------------------------------------


@cli.group()
def alerts() -> None:
    """List and acknowledge alerts."""


ALERT_COLUMNS = [
    "alert_id",
    "severity",
    "status",
    "alert_type",
    "occurrences",
    "last_seen_at",
    "title",
]


@alerts.command("list")
@click.option("--status", type=click.Choice(["active", "acknowledged", "resolved"]))
@click.option("--severity", type=click.Choice(["info", "warning", "critical"]))
@click.option("--type", "alert_type")
@click.option("--since", help="RFC 3339 instant or date.")
@click.option("--until", help="RFC 3339 instant or date.")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@run_api
def alerts_list(
    obj: Context,
    status: str | None,
    severity: str | None,
    alert_type: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Alerts, newest first."""
    items = []
    for item in obj.client().iter_alerts(
        status=status, severity=severity, alert_type=alert_type, start_time=since, end_time=until
    ):
        items.append(dict(item))
        if len(items) >= limit:
            break
    if as_json:
        click.echo(_dump(items))
    elif not items:
        click.echo("no alerts")
    else:
        click.echo(table(items, ALERT_COLUMNS))


@alerts.command("ack")
@click.argument("alert_ids", nargs=-1, required=True)
@pass_ctx
@run_api
def alerts_ack(obj: Context, alert_ids: tuple[str, ...]) -> None:
    """Acknowledge one or more alerts."""
    _alert_action(obj, alert_ids, "acknowledged", obj.client().acknowledge_alert)


@alerts.command("resolve")
@click.argument("alert_ids", nargs=-1, required=True)
@pass_ctx
@run_api
def alerts_resolve(obj: Context, alert_ids: tuple[str, ...]) -> None:
    """Resolve one or more alerts."""
    _alert_action(obj, alert_ids, "resolved", obj.client().resolve_alert)


def _alert_action(
    obj: Context, alert_ids: tuple[str, ...], verb: str, action: Callable[[str], Any]
) -> None:
    failed = 0
    for alert_id in alert_ids:
        try:
            result = action(alert_id)
        except ApiError as exc:
            failed += 1
            click.echo(f"{alert_id}: {exc}", err=True)
            continue
        click.echo(f"{alert_id}: {verb} (status {result.get('status')})")
    if failed:
        raise SystemExit(EXIT_FAILURE)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="budgetctl")


if __name__ == "__main__":  # pragma: no cover
    main()
