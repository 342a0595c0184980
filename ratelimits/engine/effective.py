"""The effective limit of SPEC 3.3 as pure functions.

    L = floor(limit_value x priority x time_of_day x usage_adjustment x budget_throttle)
        + emergency_extra, at least 1

All factors are `Decimal` (JSON floats are read through their shortest text form) so that
``1000 x 1.5 x 0.7`` floors to 1050, not 1049. One counter or level serves every priority: the
priority only changes the ceiling a request is measured against, so low-priority traffic is cut
first. A bucket's level drains at the policy-wide rate (`drain_limit`): limit_value scaled by
time of day, usage and throttle, but not by priority or emergency extra, because one level
cannot drain at two speeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation, Overflow, localcontext
from typing import Any

from .types import MAX_COUNT, Algorithm, LimitSpec, exactly_decidable

ONE = Decimal(1)
USAGE_FACTOR_MIN = Decimal("0.5")
USAGE_FACTOR_MAX = Decimal("2.0")
#: The largest multiplier or threshold a policy's overrides may hold (SPEC 3.3 names no bound;
#: the defaults go up to 2.0). Keeps every product finite and every limit meaningful.
MAX_MULTIPLIER = Decimal(1000)
#: The largest standing `overrides.emergency_capacity` (the same bound as `limit_value`).
MAX_EMERGENCY_CAPACITY = 10**12
#: The longest usage-pattern look-back: a year and a day, as for `time_window_seconds`.
MAX_LOOKBACK_SECONDS = 366 * 86_400

PRIORITIES = ("critical", "high", "normal", "low")
DEFAULT_PRIORITY_MULTIPLIERS: Mapping[str, Decimal] = {
    "critical": Decimal("2.0"),
    "high": Decimal("1.5"),
    "normal": Decimal("1.0"),
    "low": Decimal("0.5"),
}
DEFAULT_PEAK_START = 9
DEFAULT_PEAK_END = 18

USAGE_DEFAULTS: Mapping[str, Decimal] = {
    "high_threshold": Decimal("0.8"),
    "low_threshold": Decimal("0.2"),
    "scale_up": Decimal("1.25"),
    "scale_down": Decimal("0.75"),
}


def to_decimal(value: Any) -> Decimal:
    """A JSON number (int, float, numeric string or Decimal) as an exact Decimal."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise ValueError(f"not a number: {value!r}") from exc
    else:
        raise ValueError(f"not a number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _floor(value: Decimal) -> int:
    with localcontext() as ctx:
        ctx.prec = 60
        return int(value.to_integral_value(rounding=ROUND_FLOOR))


# --- priority ---------------------------------------------------------------------------------


def priority_multiplier(
    priority: str | None, overrides: Mapping[str, Any] | None = None
) -> Decimal:
    """critical 2.0, high 1.5, normal 1.0, low 0.5, unless `priority_multipliers` overrides."""
    name = priority or "normal"
    if name not in DEFAULT_PRIORITY_MULTIPLIERS:
        raise ValueError(f"unknown priority {name!r}; expected one of {', '.join(PRIORITIES)}")
    custom = (overrides or {}).get("priority_multipliers") or {}
    if name in custom:
        return to_decimal(custom[name])
    return DEFAULT_PRIORITY_MULTIPLIERS[name]


# --- time of day ------------------------------------------------------------------------------


def _in_hours(hour: int, start: int, end: int) -> bool:
    """[start, end) in hours of the day; start > end wraps past midnight; start == end: never."""
    if start < end:
        return start <= hour < end
    if start > end:
        return hour >= start or hour < end
    return False


def time_of_day_multiplier(overrides: Mapping[str, Any] | None, at: datetime) -> Decimal:
    """The factor of `overrides.time_of_day_adjustments` at the instant `at` (hours are UTC).

    Object form: ``{"peak_hours": {"start": 9, "end": 18}, "peak_multiplier": 0.5,
    "off_peak_multiplier": 2.0}`` (peak hours default 09-18; a missing multiplier is 1).
    List form: ``[{"start_hour", "end_hour" (1..24), "multiplier", "days"}]``, `days` ISO
    weekdays 1-7 (default every day); the first entry that covers the instant applies, and
    none covering it means 1.
    """
    adjustments = (overrides or {}).get("time_of_day_adjustments")
    if not adjustments:
        return ONE
    if at.tzinfo is None:
        raise ValueError("a naive datetime has no UTC hour")
    utc = at.astimezone(UTC)
    hour, weekday = utc.hour, utc.isoweekday()
    if isinstance(adjustments, Mapping):
        peak = adjustments.get("peak_hours") or {}
        start = int(peak.get("start", DEFAULT_PEAK_START))
        end = int(peak.get("end", DEFAULT_PEAK_END))
        key = "peak_multiplier" if _in_hours(hour, start, end) else "off_peak_multiplier"
        value = adjustments.get(key)
        return ONE if value is None else to_decimal(value)
    for entry in adjustments:
        days = entry.get("days")
        if days and weekday not in {int(d) for d in days}:
            continue
        if _in_hours(hour, int(entry["start_hour"]), int(entry["end_hour"])):
            return to_decimal(entry["multiplier"])
    return ONE


# --- usage pattern ----------------------------------------------------------------------------


def usage_factor(
    config: Mapping[str, Any] | None, *, used: int, limit_value: int, window_seconds: int
) -> Decimal:
    """The factor the scheduled job sets from the use over the look-back (SPEC 3.3).

    utilisation = used / (limit_value x lookback / W). At or above `high_threshold` the policy
    is under pressure and the limit scales up by `scale_up`; at or below `low_threshold`
    capacity is idle and it scales down by `scale_down`; in between 1. The result is absolute
    (not compounded run over run) and clamped to [0.5, 2.0].
    """
    if not config or not config.get("enabled"):
        return ONE
    lookback = int(config.get("lookback_seconds") or window_seconds)
    allowed = Decimal(limit_value) * Decimal(lookback) / Decimal(window_seconds)
    if allowed <= 0:
        return ONE
    ratio = Decimal(used) / allowed
    high = to_decimal(config.get("high_threshold", USAGE_DEFAULTS["high_threshold"]))
    low = to_decimal(config.get("low_threshold", USAGE_DEFAULTS["low_threshold"]))
    if ratio >= high:
        factor = to_decimal(config.get("scale_up", USAGE_DEFAULTS["scale_up"]))
    elif ratio <= low:
        factor = to_decimal(config.get("scale_down", USAGE_DEFAULTS["scale_down"]))
    else:
        factor = ONE
    return min(USAGE_FACTOR_MAX, max(USAGE_FACTOR_MIN, factor))


# --- the whole formula ------------------------------------------------------------------------


def effective_limit(
    limit_value: int,
    *,
    priority: Decimal = ONE,
    time_of_day: Decimal = ONE,
    usage: Decimal = ONE,
    throttle: Decimal = ONE,
    emergency_extra: int = 0,
) -> int:
    """At least 1, and at most MAX_COUNT: factors written before they were bounded (or a
    product too large for a Decimal) give the largest limit the engine decides exactly."""
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[Overflow] = False
        try:
            product = Decimal(limit_value) * priority * time_of_day * usage * throttle
        except InvalidOperation:
            product = Decimal(MAX_COUNT)
        if not product.is_finite() or product >= MAX_COUNT:
            product = Decimal(MAX_COUNT)
    return min(MAX_COUNT, max(1, _floor(product) + emergency_extra))


@dataclass(frozen=True, slots=True)
class EffectiveLimit:
    limit: int
    """L for this request (priority and emergency extra included)."""
    drain_limit: int
    """Requests per window at which a bucket's shared level drains (policy-wide factors only)."""
    priority: Decimal
    time_of_day: Decimal
    usage: Decimal
    throttle: Decimal
    emergency_extra: int


def resolve(
    limit_value: int,
    overrides: Mapping[str, Any] | None,
    *,
    priority: str | None,
    at: datetime,
    usage: Decimal = ONE,
    throttle: Decimal = ONE,
    temporary_extra: int = 0,
) -> EffectiveLimit:
    """Every factor of SPEC 3.3 for one policy and one request.

    `usage` is the factor last set by the scheduled job, `throttle` the budget throttle factor
    the budgets app publishes (1 when no throttle budget is above 80 %), `temporary_extra` the
    sum of the policy's active emergency grants; the standing grant
    `overrides.emergency_capacity` is added here.
    """
    p = priority_multiplier(priority, overrides)
    tod = time_of_day_multiplier(overrides, at)
    standing = int((overrides or {}).get("emergency_capacity") or 0)
    extra = standing + temporary_extra
    limit = effective_limit(
        limit_value,
        priority=p,
        time_of_day=tod,
        usage=usage,
        throttle=throttle,
        emergency_extra=extra,
    )
    drain = effective_limit(limit_value, time_of_day=tod, usage=usage, throttle=throttle)
    return EffectiveLimit(limit, drain, p, tod, usage, throttle, extra)


# --- validation (for serializers; the functions above assume valid input) ---------------------


def validate_overrides(overrides: Any) -> dict[str, str]:
    """Problems in a policy's `overrides`, as {field path: message}; empty when valid."""
    errors: dict[str, str] = {}
    if overrides is None:
        return errors
    if not isinstance(overrides, Mapping):
        return {"overrides": "must be an object"}
    known = {
        "priority_multipliers",
        "time_of_day_adjustments",
        "usage_pattern_analysis",
        "emergency_capacity",
    }
    for name in overrides:
        if name not in known:
            errors[f"overrides.{name}"] = "unknown field"

    def positive(path: str, value: Any) -> None:
        message = f"must be a number > 0 and <= {MAX_MULTIPLIER}"
        try:
            number = to_decimal(value)
        except ValueError:
            errors[path] = message
            return
        if not 0 < number <= MAX_MULTIPLIER:
            errors[path] = message

    def hour(path: str, value: Any, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[path] = f"must be an integer in {low}..{high}"

    pm = overrides.get("priority_multipliers")
    if pm is not None:
        if not isinstance(pm, Mapping):
            errors["overrides.priority_multipliers"] = "must be an object"
        else:
            for name, value in pm.items():
                path = f"overrides.priority_multipliers.{name}"
                if name not in DEFAULT_PRIORITY_MULTIPLIERS:
                    errors[path] = f"unknown priority; expected one of {', '.join(PRIORITIES)}"
                else:
                    positive(path, value)

    tod = overrides.get("time_of_day_adjustments")
    if tod is not None:
        base = "overrides.time_of_day_adjustments"
        if isinstance(tod, Mapping):
            for name in tod:
                if name not in {"peak_hours", "peak_multiplier", "off_peak_multiplier"}:
                    errors[f"{base}.{name}"] = "unknown field"
            peak = tod.get("peak_hours")
            if peak is not None:
                if not isinstance(peak, Mapping):
                    errors[f"{base}.peak_hours"] = "must be an object"
                else:
                    hour(f"{base}.peak_hours.start", peak.get("start", DEFAULT_PEAK_START), 0, 23)
                    hour(f"{base}.peak_hours.end", peak.get("end", DEFAULT_PEAK_END), 1, 24)
            for name in ("peak_multiplier", "off_peak_multiplier"):
                if name in tod:
                    positive(f"{base}.{name}", tod[name])
        elif isinstance(tod, list):
            for i, entry in enumerate(tod):
                path = f"{base}[{i}]"
                if not isinstance(entry, Mapping):
                    errors[path] = "must be an object"
                    continue
                for name in ("start_hour", "end_hour", "multiplier"):
                    if name not in entry:
                        errors[f"{path}.{name}"] = "required"
                if "start_hour" in entry:
                    hour(f"{path}.start_hour", entry["start_hour"], 0, 23)
                if "end_hour" in entry:
                    hour(f"{path}.end_hour", entry["end_hour"], 1, 24)
                if "multiplier" in entry:
                    positive(f"{path}.multiplier", entry["multiplier"])
                days = entry.get("days")
                if days is not None and (
                    not isinstance(days, list)
                    or any(isinstance(d, bool) or d not in range(1, 8) for d in days)
                ):
                    errors[f"{path}.days"] = "must be a list of ISO weekdays 1..7"
        else:
            errors[base] = "must be an object or a list"

    upa = overrides.get("usage_pattern_analysis")
    if upa is not None:
        base = "overrides.usage_pattern_analysis"
        if not isinstance(upa, Mapping):
            errors[base] = "must be an object"
        else:
            for name in upa:
                if name not in {"enabled", *USAGE_DEFAULTS, "lookback_seconds"}:
                    errors[f"{base}.{name}"] = "unknown field"
            if "enabled" in upa and not isinstance(upa["enabled"], bool):
                errors[f"{base}.enabled"] = "must be a boolean"
            lookback = upa.get("lookback_seconds")
            if lookback is not None and (
                isinstance(lookback, bool)
                or not isinstance(lookback, int)
                or not 1 <= lookback <= MAX_LOOKBACK_SECONDS
            ):
                errors[f"{base}.lookback_seconds"] = (
                    f"must be an integer in 1..{MAX_LOOKBACK_SECONDS}"
                )
            for name in USAGE_DEFAULTS:
                if name in upa:
                    positive(f"{base}.{name}", upa[name])

    ec = overrides.get("emergency_capacity")
    if ec is not None and (
        isinstance(ec, bool) or not isinstance(ec, int) or not 0 <= ec <= MAX_EMERGENCY_CAPACITY
    ):
        errors["overrides.emergency_capacity"] = (
            f"must be an integer in 0..{MAX_EMERGENCY_CAPACITY}"
        )
    return errors


def exactness_problem(
    *,
    limit_value: int,
    time_window_seconds: int,
    algorithm: str,
    burst_capacity: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> str | None:
    """Why a policy cannot be decided exactly at its highest priority, or None.

    A bucket's level is an integer count of units (`compile_spec`) that must stay below 2**53;
    a policy past that is refused when written. (At check time, factors that take a limit past
    it lower the limit to the largest exact one instead of failing.) Expects valid overrides.
    """
    multipliers = dict(DEFAULT_PRIORITY_MULTIPLIERS)
    for name, value in ((overrides or {}).get("priority_multipliers") or {}).items():
        multipliers[name] = to_decimal(value)
    limit = effective_limit(
        limit_value,
        priority=max(multipliers.values()),
        emergency_extra=int((overrides or {}).get("emergency_capacity") or 0),
    )
    spec = LimitSpec(
        key="validate",
        algorithm=Algorithm(algorithm),
        limit=limit,
        window_seconds=time_window_seconds,
        burst=burst_capacity,
        drain_limit=limit_value,
    )
    if exactly_decidable(spec):
        return None
    return (
        "limit_value and burst_capacity are too large for this time_window_seconds to be "
        "decided exactly; lower them or use a shorter window"
    )
