"""The admin dashboard's figures: a registry of panel providers that apps fill in `ready()`.

The platform imports no domain app. Each app registers, for the panels whose figures it owns,
a function that reads them through its selectors:

    # costs/apps.py
    def ready(self):
        from budgeting_site.platform import admin_dashboard
        from costs import selectors
        admin_dashboard.register("cost_per_day", selectors.dashboard_cost_per_day)

Every provider is called with keyword arguments `tenant_ids` (a list of tenant ids, or None
for every tenant — a superuser's view), `start` and `end` (aware datetimes, `[start, end)`),
and returns the rows of its panel's contract below. A provider that raises leaves its panel
"unavailable" (logged with its traceback); the page never fails. See docs/admin-dashboard.md.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from budgeting_site.platform.admin_scoping import ROLE_TABLE

logger = logging.getLogger(__name__)

Provider = Callable[..., Iterable[Any]]


@dataclass(frozen=True)
class PanelSpec:
    key: str
    title: str
    chart: str  # the Chart.js type the page draws
    roles: frozenset[str]  # who may see it (SPEC 1.1 read roles of the resource)
    window: timedelta
    contract: str  # the rows a provider returns


PANELS: dict[str, PanelSpec] = {
    spec.key: spec
    for spec in (
        PanelSpec(
            key="cost_per_day",
            title="Cost per day, last 30 days",
            chart="line",
            roles=ROLE_TABLE["costs"].read,
            window=timedelta(days=30),
            contract="(day: date, currency: str, amount: Decimal), one per day and currency",
        ),
        PanelSpec(
            key="top_spenders",
            title="Top spenders, last 30 days",
            chart="bar",
            roles=ROLE_TABLE["costs"].read,
            window=timedelta(days=30),
            contract=(
                "(dimension: 'tenant'|'project'|'feature', id: str, currency: str, "
                "amount: Decimal), at most `limit` per dimension, largest first"
            ),
        ),
        PanelSpec(
            key="budget_utilization",
            title="Budgets by utilization, with forecast",
            chart="bar",
            roles=ROLE_TABLE["budgets"].read,
            window=timedelta(0),
            contract=(
                "dicts {budget_id, name, tenant_id, currency, amount, spent, reserved, "
                "forecast} for the current period of each active budget"
            ),
        ),
        PanelSpec(
            key="ratelimit_denials",
            title="Rate-limit denials per hour, last 24 hours",
            chart="bar",
            roles=ROLE_TABLE["ratelimits"].read,
            window=timedelta(hours=24),
            contract="(hour: aware datetime at :00, count: int)",
        ),
        PanelSpec(
            key="open_alerts",
            title="Open alerts by severity",
            chart="doughnut",
            roles=ROLE_TABLE["events"].read,
            window=timedelta(0),
            contract="(severity: 'info'|'warning'|'critical', count: int) of unresolved alerts",
        ),
    )
}

_PROVIDERS: dict[str, Provider] = {}

TOP_LIMIT = 8
DAY_ALIGNED = frozenset({"cost_per_day", "top_spenders"})
BUDGET_LIMIT = 15
SEVERITIES = ("critical", "warning", "info")


def register(panel: str, provider: Provider) -> None:
    if panel not in PANELS:
        raise ValueError(f"unknown dashboard panel {panel!r}; one of {sorted(PANELS)}")
    _PROVIDERS[panel] = provider


def unregister(panel: str) -> None:
    _PROVIDERS.pop(panel, None)


def providers() -> dict[str, Provider]:
    return dict(_PROVIDERS)


def _money(value: Any) -> str:
    return str(Decimal(value).quantize(Decimal("0.01")))


def _ratio(numerator: Any, denominator: Any) -> str:
    denominator = Decimal(denominator)
    if denominator <= 0:
        return "0"
    return str((Decimal(numerator) / denominator).quantize(Decimal("0.0001")))


def _cost_per_day(rows: Iterable[Any], start: datetime, end: datetime) -> dict[str, Any]:
    days: list[date] = []
    day = start.date()
    while day < end.date():  # end is a midnight
        days.append(day)
        day += timedelta(days=1)
    index = {d: i for i, d in enumerate(days)}
    series: dict[str, list[Decimal]] = {}
    for day_value, currency, amount in rows:
        key = day_value.date() if isinstance(day_value, datetime) else day_value
        if key not in index:
            continue
        series.setdefault(str(currency), [Decimal(0)] * len(days))[index[key]] += Decimal(amount)
    return {
        "labels": [d.isoformat() for d in days],
        "datasets": [
            {"label": currency, "data": [_money(v) for v in values]}
            for currency, values in sorted(series.items())
        ],
        "empty": not series,
    }


def _top_spenders(rows: Iterable[Any]) -> dict[str, Any]:
    groups: dict[str, list[tuple[str, str, Decimal]]] = {"tenant": [], "project": [], "feature": []}
    for dimension, ident, currency, amount in rows:
        if dimension in groups:
            groups[dimension].append((str(ident), str(currency), Decimal(amount)))
    charts = {}
    for dimension, items in groups.items():
        items.sort(key=lambda item: (-item[2], item[0]))
        items = items[:TOP_LIMIT]
        currencies = {c for _, c, _ in items}
        label = (lambda i, c: i) if len(currencies) <= 1 else (lambda i, c: f"{i} ({c})")
        charts[dimension] = {
            "labels": [label(i, c) for i, c, _ in items],
            "datasets": [
                {
                    "label": next(iter(currencies)) if len(currencies) == 1 else "amount",
                    "data": [_money(a) for _, _, a in items],
                }
            ],
            "empty": not items,
        }
    return charts


def _budget_utilization(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    items = []
    for row in rows:
        amount = Decimal(row["amount"])
        used = Decimal(row.get("spent") or 0) + Decimal(row.get("reserved") or 0)
        items.append(
            {
                "label": f"{row.get('name') or row['budget_id']} · {row['tenant_id']}",
                "utilization": _ratio(used, amount),
                "forecast": _ratio(row.get("forecast") or 0, amount),
                "spent": _money(row.get("spent") or 0),
                "amount": _money(amount),
                "currency": str(row.get("currency") or ""),
            }
        )
    items.sort(key=lambda i: (-Decimal(i["utilization"]), i["label"]))
    items = items[:BUDGET_LIMIT]
    for item in items:
        item["utilization_pct"] = _pct(item["utilization"])
        item["forecast_pct"] = _pct(item["forecast"])
    return {
        "labels": [i["label"] for i in items],
        "datasets": [
            {"label": "utilization %", "data": [i["utilization_pct"] for i in items]},
            {"label": "forecast %", "data": [i["forecast_pct"] for i in items]},
        ],
        "rows": items,
        "empty": not items,
    }


def _pct(ratio: str) -> str:
    return str((Decimal(ratio) * 100).quantize(Decimal("0.1")))


def _hour(value: datetime) -> datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def _ratelimit_denials(rows: Iterable[Any], start: datetime, end: datetime) -> dict[str, Any]:
    hours: list[datetime] = []
    hour = _hour(start)
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    index = {h: i for i, h in enumerate(hours)}
    counts = [0] * len(hours)
    for hour_value, count in rows:
        i = index.get(_hour(hour_value))
        if i is not None:
            counts[i] += int(count)
    return {
        "labels": [h.strftime("%d %H:00") for h in hours],
        "datasets": [{"label": "denials", "data": counts}],
        "empty": not any(counts),
        "total": sum(counts),
    }


def _open_alerts(rows: Iterable[Any]) -> dict[str, Any]:
    counts = dict.fromkeys(SEVERITIES, 0)
    for severity, count in rows:
        if severity in counts:
            counts[severity] += int(count)
    return {
        "labels": list(SEVERITIES),
        "datasets": [{"label": "open alerts", "data": [counts[s] for s in SEVERITIES]}],
        "empty": not any(counts.values()),
        "total": sum(counts.values()),
    }


def build_panel(key: str, *, tenant_ids: list[str] | None, now: datetime) -> dict[str, Any]:
    """One panel's chart data, or its state: `missing` (no app registered it yet),
    `forbidden` (the user holds no role that reads it), `unavailable` (its provider failed)."""
    spec = PANELS[key]
    panel: dict[str, Any] = {"key": key, "title": spec.title, "chart": spec.chart}
    provider = _PROVIDERS.get(key)
    if tenant_ids is not None and not tenant_ids:
        return {**panel, "state": "forbidden"}
    if provider is None:
        return {**panel, "state": "missing"}
    if key in DAY_ALIGNED:  # whole UTC days, today included
        end = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    elif key == "ratelimit_denials":  # whole hours, this one included
        end = _hour(now) + timedelta(hours=1)
    else:
        end = now
    start = end - spec.window
    try:
        kwargs: dict[str, Any] = {"tenant_ids": tenant_ids, "start": start, "end": end}
        if key == "top_spenders":
            kwargs["limit"] = TOP_LIMIT
        rows = list(provider(**kwargs))
        if key == "cost_per_day":
            data = _cost_per_day(rows, start, end)
        elif key == "top_spenders":
            data = _top_spenders(rows)
        elif key == "budget_utilization":
            data = _budget_utilization(rows)
        elif key == "ratelimit_denials":
            data = _ratelimit_denials(rows, start, end)
        else:
            data = _open_alerts(rows)
    except Exception:
        logger.exception("admin.dashboard_panel_failed", extra={"panel": key})
        return {**panel, "state": "unavailable"}
    return {**panel, "state": "ok", "data": data}


EMPTY_TEXT = {
    "cost_per_day": "No cost recorded in the last 30 days.",
    "top_spenders": "No spending in the last 30 days.",
    "budget_utilization": "No active budget.",
    "ratelimit_denials": "No rate-limit denial in the last 24 hours.",
    "open_alerts": "No open alert.",
}


def charts_of(panel: dict[str, Any]) -> list[dict[str, Any]]:
    """The canvases a panel draws: one per chart, each with the element id of its data."""
    if panel.get("state") != "ok":
        return []
    key = panel["key"]
    if key == "top_spenders":
        parts = [(f"by {dim}", f"chart-{key}-{dim}", data) for dim, data in panel["data"].items()]
    else:
        parts = [("", f"chart-{key}", panel["data"])]
    return [
        {
            "caption": caption,
            "element_id": element_id,
            "type": panel["chart"],
            "horizontal": key in {"top_spenders", "budget_utilization"},
            "percent": key == "budget_utilization",
            "data": {"labels": data["labels"], "datasets": data["datasets"]},
            "empty": data["empty"],
            "empty_text": EMPTY_TEXT[key],
        }
        for caption, element_id, data in parts
    ]
