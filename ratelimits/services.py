"""Every write of the ratelimits app, and the rate-limit check (SPEC 3).

Policy writes own their transaction, write a `policy-admin` receipt in it, and bump the
tenant's policy epoch after commit so that every process reloads on its next check. The check
decides in one store round trip (Redis: one Lua script carrying every matching policy, this
API's own limit, the policy epoch and the receipt facts); its receipt is signed and stored off
the request path by `drain_receipts` (Redis, memory) or in the check's own transaction
(database store).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from budgeting_site.platform import clock, metrics
from budgeting_site.platform.context import current_correlation_id
from budgeting_site.platform.errors import IdempotencyKeyReused
from budgeting_site.platform.principal import Principal
from ratelimits import runtime, selectors
from ratelimits.engine import (
    Algorithm,
    CheckBatch,
    CheckResult,
    Decision,
    FailMode,
    IdempotencySpec,
    LimitSpec,
    Outcome,
    ReceiptSpec,
    Store,
    StoredReceipt,
    compile_spec,
)
from ratelimits.engine.effective import resolve, usage_factor
from ratelimits.engine.stores.base import decode_decided, encode_decided
from ratelimits.engine.types import MAX_EXACT
from ratelimits.exceptions import DuplicatePolicy, InvalidPolicy, StalePolicyVersion
from ratelimits.models import (
    EmergencyGrant,
    GrantStatus,
    RateLimitPolicy,
    ViolationMark,
)
from ratelimits.runtime import PolicySnap
from receipts.services import ReceiptDraft, emit_receipt, emit_receipts_bulk, system_actor

logger = logging.getLogger(__name__)

GATE = "rate-limit-check"
EMERGENCY_APPROVAL_AFTER = timedelta(hours=4)
EMERGENCY_MAX_SECONDS = 86_400
API_LIMIT_WINDOW_SECONDS = 60
MAX_STALE_RETRIES = 3
IDEMPOTENCY_TTL_SECONDS = 86_400


def store_keeps_idempotency() -> bool:
    """Whether the policy store checks idempotency keys inside the check's own step."""
    from ratelimits.db_store import DatabaseStore

    return not isinstance(runtime.policy_store(), DatabaseStore)


def api_limit_rides_with_check() -> bool:
    """Whether this API's own limit is decided in the check's own store round trip (SPEC 1.5):
    true when one store holds both (Redis); the embedded default keeps it in memory."""
    return runtime.policy_store() is runtime.api_store()


POLICY_FIELDS = (
    "policy_name",
    "scope_type",
    "scope_id",
    "resource_type",
    "limit_value",
    "time_window_seconds",
    "algorithm",
    "burst_capacity",
    "overrides",
    "mode",
    "fail_mode",
    "enabled",
)


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _after_commit_bump(tenant_id: str) -> None:
    """Make every process reload the tenant's policies on its next check.

    The database store's epoch moves in the change's own transaction; Redis's after commit
    (a process that reloaded before the commit would otherwise cache the old rows).
    """
    from ratelimits.db_store import DatabaseStore

    store = runtime.policy_store()
    if isinstance(store, DatabaseStore):
        store.bump_epoch(tenant_id)

    def bump() -> None:
        if not isinstance(store, DatabaseStore):
            try:
                store.bump_epoch(tenant_id)
            except Exception:
                # This process sees its own change at once (forget below) and bumps again on
                # its next check; the others see the change once the store answers.
                logger.warning(
                    "ratelimit.epoch_bump_failed", extra={"tenant_id": tenant_id}, exc_info=True
                )
                runtime.pending_bumps.add(tenant_id)
        runtime.forget(tenant_id)

    transaction.on_commit(bump)


def _policy_receipt(
    policy: RateLimitPolicy, action: str, actor: dict[str, Any], before: dict[str, Any] | None
) -> None:
    emit_receipt(
        tenant_id=policy.tenant_id,
        gate_id="policy-admin",
        inputs={"action": action, "policy_id": policy.pk, "before": before},
        result={"policy": policy_snapshot(policy)},
        decision_status="pass",
        rationale=f"rate-limit policy {action}",
        badges=[f"rate_limit_policy_{action}"],
        policy_version_ids=[policy.version_id],
        actor=actor,
    )


def policy_snapshot(policy: RateLimitPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in POLICY_FIELDS} | {
        "policy_id": str(policy.pk),
        "version": policy.version,
    }


# --- policies -----------------------------------------------------------------------------------


def policy_create(
    *, tenant_id: str, data: Mapping[str, Any], actor: dict[str, Any]
) -> RateLimitPolicy:
    now = clock.now()
    values = {k: data[k] for k in POLICY_FIELDS if k in data}
    if values.get("scope_type", "tenant") == "tenant":
        values["scope_id"] = tenant_id
    policy = RateLimitPolicy(
        tenant_id=tenant_id,
        created_at=now,
        updated_at=now,
        created_by=str(actor.get("principal", "")),
        **values,
    )
    try:
        with transaction.atomic():
            policy.save(force_insert=True)
            _policy_receipt(policy, "created", actor, None)
            _after_commit_bump(tenant_id)
    except IntegrityError as exc:
        raise DuplicatePolicy(
            details={
                "scope_type": policy.scope_type,
                "scope_id": policy.scope_id,
                "resource_type": policy.resource_type,
            }
        ) from exc
    logger.info("ratelimit.policy_created", extra={"policy_id": str(policy.pk)})
    return policy


def policy_update(
    *,
    tenant_id: str,
    policy_id: uuid.UUID,
    data: Mapping[str, Any],
    expected_version: int | None,
    actor: dict[str, Any],
) -> RateLimitPolicy:
    try:
        with transaction.atomic():
            policy = (
                RateLimitPolicy.objects.select_for_update()
                .filter(tenant_id=tenant_id, pk=policy_id)
                .first()
            )
            if policy is None:
                selectors.get_policy(tenant_id=tenant_id, policy_id=policy_id)  # raises 404
                raise AssertionError("unreachable")
            if expected_version is not None and expected_version != policy.version:
                raise StalePolicyVersion(
                    details={"version": expected_version, "current_version": policy.version}
                )
            before = policy_snapshot(policy)
            for name in POLICY_FIELDS:
                if name in data:
                    setattr(policy, name, data[name])
            if policy.scope_type == "tenant":
                policy.scope_id = tenant_id
            policy.version += 1
            policy.updated_at = clock.now()
            policy.save()
            _policy_receipt(policy, "updated", actor, before)
            _after_commit_bump(tenant_id)
    except IntegrityError as exc:
        raise DuplicatePolicy() from exc
    return policy


def policy_delete(*, tenant_id: str, policy_id: uuid.UUID, actor: dict[str, Any]) -> None:
    with transaction.atomic():
        policy = (
            RateLimitPolicy.objects.select_for_update()
            .filter(tenant_id=tenant_id, pk=policy_id)
            .first()
        )
        if policy is None:
            selectors.get_policy(tenant_id=tenant_id, policy_id=policy_id)
            return
        _policy_receipt(policy, "deleted", actor, policy_snapshot(policy))
        policy.delete()
        _after_commit_bump(tenant_id)


# --- emergency capacity -------------------------------------------------------------------------


@dataclass
class GrantOutcome:
    grant: EmergencyGrant
    approval_id: uuid.UUID | None
    receipt_id: uuid.UUID | None


def emergency_capacity_request(
    *,
    tenant_id: str,
    policy_id: uuid.UUID,
    extra_requests: int,
    duration_seconds: int,
    reason: str,
    principal: Principal,
) -> GrantOutcome:
    """A grant up to 4 h starts now; a longer one waits for an `emergency_capacity` approval."""
    if not 1 <= duration_seconds <= EMERGENCY_MAX_SECONDS:
        raise InvalidPolicy(
            "duration_seconds must be between 1 and 86400",
            details={"duration_seconds": ["must be between 1 and 86400"]},
        )
    now = clock.now()
    with transaction.atomic():
        policy = selectors.get_policy(tenant_id=tenant_id, policy_id=policy_id)
        needs_approval = timedelta(seconds=duration_seconds) > EMERGENCY_APPROVAL_AFTER
        grant = EmergencyGrant(
            tenant_id=tenant_id,
            policy=policy,
            extra_requests=extra_requests,
            duration_seconds=duration_seconds,
            reason=reason,
            requested_by=principal.principal,
            created_at=now,
            status=GrantStatus.PENDING_APPROVAL if needs_approval else GrantStatus.ACTIVE,
        )
        receipt_id = None
        approval_id = None
        if needs_approval:
            from approvals.services import request_approval

            requested = request_approval(
                tenant_id=tenant_id,
                kind="emergency_capacity",
                requested_by=principal.principal,
                requested_amount=Decimal(extra_requests),
                policy_id=policy.pk,
                details={
                    "extra_requests": extra_requests,
                    "duration_seconds": duration_seconds,
                    "reason": reason,
                },
                at=now,
            )
            approval_id = requested.approval.pk
            existing = (
                None
                if requested.created
                else EmergencyGrant.objects.filter(
                    tenant_id=tenant_id,
                    approval_id=approval_id,
                    status=GrantStatus.PENDING_APPROVAL,
                ).first()
            )
            if existing is not None:
                # A repeat while the first request waits: the same request, not a second
                # grant riding on the same approval (which would double the extra).
                grant = existing
            else:
                grant.approval_id = approval_id
                grant.save(force_insert=True)
            receipt_id = _grant_request_receipt(grant, principal.actor).receipt_id
        else:
            grant.starts_at = now
            grant.ends_at = now + timedelta(seconds=duration_seconds)
            grant.save(force_insert=True)
            receipt_id = _grant_receipt(grant, principal.actor).receipt_id
            _after_commit_bump(tenant_id)
    return GrantOutcome(grant, approval_id, receipt_id)


def _grant_request_receipt(grant: EmergencyGrant, actor: dict[str, Any]) -> Any:
    """A request past 4 h waits for a human: escalated, so `soft_block` (SPEC 6)."""
    return emit_receipt(
        tenant_id=grant.tenant_id,
        gate_id="approval",
        inputs={
            "policy_id": grant.policy_id,
            "extra_requests": grant.extra_requests,
            "duration_seconds": grant.duration_seconds,
        },
        result={
            "grant_id": grant.pk,
            "approval_id": grant.approval_id,
            "status": grant.status,
            "requires_approval": True,
        },
        decision_status="soft_block",
        rationale="emergency capacity past 4 hours waits for an approval",
        badges=["emergency_capacity", "approval_requested"],
        policy_version_ids=[f"{grant.policy_id}@{grant.policy.version}"],
        actor=actor,
    )


def _grant_receipt(
    grant: EmergencyGrant,
    actor: dict[str, Any],
    *,
    decision_status: str = "pass",
    rationale: str = "emergency capacity granted",
    badges: tuple[str, ...] = (),
) -> Any:
    return emit_receipt(
        tenant_id=grant.tenant_id,
        gate_id="approval",
        inputs={
            "policy_id": grant.policy_id,
            "extra_requests": grant.extra_requests,
            "duration_seconds": grant.duration_seconds,
            "approval_id": grant.approval_id,
        },
        result={
            "grant_id": grant.pk,
            "starts_at": grant.starts_at,
            "ends_at": grant.ends_at,
            "status": grant.status,
        },
        decision_status=decision_status,
        rationale=rationale,
        badges=["emergency_capacity", *badges],
        policy_version_ids=[f"{grant.policy_id}@{grant.policy.version}"],
        actor=actor,
    )


def emergency_capacity_approved(approval: Any) -> None:
    """Approval callback (registered in AppConfig.ready): the pending grant starts now."""
    now = clock.now()
    grants = EmergencyGrant.objects.select_for_update().filter(
        tenant_id=approval.tenant_id, approval_id=approval.pk, status=GrantStatus.PENDING_APPROVAL
    )
    for grant in grants:
        grant.status = GrantStatus.ACTIVE
        grant.starts_at = now
        grant.ends_at = now + timedelta(seconds=grant.duration_seconds)
        if approval.approved_amount is not None:
            grant.extra_requests = max(1, min(grant.extra_requests, int(approval.approved_amount)))
        grant.save(update_fields=["status", "starts_at", "ends_at", "extra_requests"])
        _grant_receipt(
            grant, {"principal": approval.decided_by, "credential_id": "", "instance": ""}
        )
        _after_commit_bump(approval.tenant_id)


#: A grant waiting for its approval ends as the approval did (`approvals.models.CLOSED`).
_CLOSED_GRANT_STATUS = {"rejected": GrantStatus.REJECTED, "expired": GrantStatus.EXPIRED}


def emergency_capacity_closed(approval: Any, actor: dict[str, Any]) -> None:
    """Approval callback (registered in AppConfig.ready), inside the approval's transition: a
    grant still waiting for a rejected or expired request ends with it and never applies. A
    grant that already started (its request was approved, then expired) is not touched."""
    grants = EmergencyGrant.objects.select_for_update().filter(
        tenant_id=approval.tenant_id, approval_id=approval.pk, status=GrantStatus.PENDING_APPROVAL
    )
    for grant in grants:
        grant.status = _CLOSED_GRANT_STATUS[approval.status]
        grant.save(update_fields=["status"])
        _grant_receipt(
            grant,
            actor,
            decision_status="hard_block",
            rationale=f"emergency capacity not granted: approval {approval.status}",
            badges=(grant.status,),
        )


# --- the check ----------------------------------------------------------------------------------


@dataclass
class CheckRequest:
    tenant_id: str
    resource_type: str
    request_count: int = 1
    priority: str = "normal"
    resource_key: str | None = None
    scopes: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


@dataclass
class CheckAnswer:
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    api_limited: bool = False


def _api_limit_spec(limit_class: str) -> LimitSpec | None:
    limits = settings.API_RATE_LIMITS
    if limits is None:
        return None
    per_minute = int(limits.get(limit_class) or limits["default"])
    return LimitSpec(
        key=f"api:{limit_class}",
        algorithm=Algorithm.TOKEN_BUCKET,
        limit=per_minute,
        window_seconds=API_LIMIT_WINDOW_SECONDS,
        fail_mode=FailMode.OPEN,
    )


def api_limit_headers(limit_class: str, decision: Decision, now_ms: int) -> dict[str, str]:
    """SPEC 1.5 headers for this API's own limit (IETF draft 10 syntax plus X-RateLimit-*)."""
    return limit_headers(
        name=limit_class,
        limit=decision.limit,
        window=API_LIMIT_WINDOW_SECONDS,
        decision=decision,
        now_ms=now_ms,
    )


def limit_headers(
    *, name: str, limit: int, window: int, decision: Decision, now_ms: int
) -> dict[str, str]:
    seconds_left = max(0, -(-(decision.reset_ms - now_ms) // 1000))
    headers = {
        "RateLimit-Policy": f'"{name}";q={limit};w={window}',
        "RateLimit": f'"{name}";r={decision.remaining};t={seconds_left}',
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(decision.reset_time),
    }
    if not decision.allowed and decision.retry_after is not None:
        headers["Retry-After"] = str(decision.retry_after)
    return headers


def enforce_api_limit(*, tenant_id: str, limit_class: str) -> tuple[bool, dict[str, str]]:
    """This API's own limit alone (every endpoint but the rate-limit check)."""
    spec = _api_limit_spec(limit_class)
    if spec is None:
        return True, {}
    store = runtime.api_store()
    # The same clock as the check's own round trip (which carries this limit too on Redis).
    result = store.check(
        CheckBatch(tenant=tenant_id, api_limit=spec), now_ms=runtime.injected_now_ms(store)
    )
    decision = result.api
    if decision is None:
        return True, {}
    return result.outcome is not Outcome.API_LIMITED, api_limit_headers(
        limit_class, decision, result.now_ms
    )


def _policy_spec(
    policy: PolicySnap,
    req: CheckRequest,
    snap: runtime.Snapshot,
    at: datetime,
    factors: list[tuple[str, str, Decimal]],
) -> tuple[LimitSpec, Any]:
    eff = resolve(
        policy.limit_value,
        policy.overrides,
        priority=req.priority,
        at=at,
        usage=policy.usage_factor,
        throttle=selectors.throttle_for(policy, req.tenant_id, factors),
        temporary_extra=snap.extra_for(policy.id, at),
    )
    key = req.resource_key if req.resource_key else policy.scope_id
    algorithm = Algorithm(policy.algorithm)
    limit = eff.limit
    if algorithm is Algorithm.SLIDING_WINDOW_LOG:
        # A log's size is capped: a priority or grant cannot take it past the maximum.
        limit = min(limit, settings.RATELIMIT_SLIDING_LOG_MAX)
    burst = policy.burst_capacity
    if algorithm.is_bucket and (limit + burst + 1) * policy.time_window_seconds * 1000 >= MAX_EXACT:
        # Check-time factors (priority, emergency capacity, time of day) took the bucket past
        # what can be decided exactly: the engine lowers it to the largest exact limit; use
        # that here too, so the answer and the receipt name the limit actually applied.
        exact = compile_spec(
            LimitSpec(
                key="exact",
                algorithm=algorithm,
                limit=limit,
                window_seconds=policy.time_window_seconds,
                burst=burst,
                drain_limit=eff.drain_limit,
            )
        )
        limit, burst = exact.limit, exact.burst
    spec = LimitSpec(
        key=f"{policy.id}:{key}",
        algorithm=algorithm,
        limit=limit,
        window_seconds=policy.time_window_seconds,
        burst=burst,
        drain_limit=eff.drain_limit,
        cost=req.request_count,
        shadow=policy.mode == "shadow",
        fail_mode=FailMode(policy.fail_mode),
        ref=policy.version_id,
    )
    return spec, eff


def _facts(
    req: CheckRequest,
    policies: Sequence[PolicySnap],
    specs: Sequence[LimitSpec],
    actor: dict[str, Any],
    correlation_id: str,
) -> str:
    return json.dumps(
        {
            "inputs": {
                "tenant_id": req.tenant_id,
                "resource_type": req.resource_type,
                "request_count": req.request_count,
                "priority": req.priority,
                "resource_key": req.resource_key,
                "scopes": req.scopes,
                "dry_run": req.dry_run,
            },
            "policies": [
                {
                    "policy_id": p.id,
                    "version": p.version,
                    "algorithm": p.algorithm,
                    "limit_value": p.limit_value,
                    "effective_limit": spec.limit,
                    "time_window_seconds": p.time_window_seconds,
                    "mode": p.mode,
                    "resource_key": req.resource_key or p.scope_id,
                }
                for p, spec in zip(policies, specs, strict=True)
            ],
            "actor": actor,
            "correlation_id": correlation_id,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )


def check(
    *,
    req: CheckRequest,
    principal: Principal,
    correlation_id: str | None = None,
    with_api_limit: bool = True,
    idempotency_key: str | None = None,
    fingerprint: str | None = None,
) -> CheckAnswer:
    """Decide one check. With an idempotency key (stores that keep it: Redis, memory), the key
    is checked and stored inside the same atomic step: a repeat replays the first answer."""
    started = time.perf_counter()
    idempotency = (
        IdempotencySpec(
            key=idempotency_key,
            fingerprint=fingerprint or "",
            ttl_seconds=IDEMPOTENCY_TTL_SECONDS,
            # A denial answered with 429 is not a final answer (SPEC 1.4): keep the key free.
            store_denials=settings.RATELIMIT_DENY_STATUS == 200,
        )
        if idempotency_key is not None
        else None
    )
    correlation_id = correlation_id or current_correlation_id()
    store = runtime.policy_store()
    api_spec = _api_limit_spec("rate_limit_check") if with_api_limit else None
    api_in_store = api_spec is not None and store is runtime.api_store()
    if api_spec is not None and not api_in_store:
        # This API's own limit lives in another store (embedded default: memory): ask it
        # first, so that a refused caller consumes nothing of its policies.
        allowed, api_headers = enforce_api_limit(
            tenant_id=req.tenant_id, limit_class="rate_limit_check"
        )
        if not allowed:
            return CheckAnswer({}, api_headers, 429, api_limited=True)
    if runtime.pending_bumps:
        runtime.retry_pending_bumps(store)
    receipt_id = str(uuid.uuid4())
    at = clock.now()
    snap = runtime.snapshot(req.tenant_id, store)
    result: CheckResult | None = None
    for _ in range(MAX_STALE_RETRIES):
        policies = selectors.matching_policies(
            snap, tenant_id=req.tenant_id, resource_type=req.resource_type, scopes=req.scopes
        )
        factors = runtime.throttle_factors(req.tenant_id) if policies else []
        built = [_policy_spec(p, req, snap, at, factors) for p in policies]
        specs = [b[0] for b in built]
        batch = CheckBatch(
            tenant=req.tenant_id,
            limits=specs,
            api_limit=api_spec if api_in_store else None,
            expected_epoch=snap.epoch,
            receipt=ReceiptSpec(
                receipt_id, _facts(req, policies, specs, principal.actor, correlation_id)
            ),
            idempotency=idempotency,
            dry_run=req.dry_run,
        )
        result = store.check(batch, now_ms=runtime.injected_now_ms(store))
        if result.outcome is not Outcome.STALE_POLICIES:
            break
        snap = runtime.snapshot(req.tenant_id, store, epoch=result.epoch)
    assert result is not None
    if result.outcome is Outcome.STALE_POLICIES:
        # Policies changing faster than we can read them: decide without the epoch guard.
        batch = CheckBatch(
            tenant=batch.tenant,
            limits=batch.limits,
            api_limit=batch.api_limit,
            receipt=batch.receipt,
            idempotency=batch.idempotency,
            dry_run=batch.dry_run,
        )
        result = store.check(batch, now_ms=runtime.injected_now_ms(store))

    if result.outcome is Outcome.API_LIMITED:
        assert result.api is not None
        return CheckAnswer(
            {}, api_limit_headers("rate_limit_check", result.api, result.now_ms), 429, True
        )
    if result.outcome is Outcome.IDEMPOTENCY_MISMATCH:
        raise IdempotencyKeyReused(details={"idempotency_key": idempotency_key})
    if result.outcome is Outcome.REPLAYED:
        return _replayed_answer(req, result, batch)

    body, headers = _render(req, policies, result, receipt_id, correlation_id, batch)
    if not headers and result.api is not None:
        # No policy decided: the headers describe this API's own limit, as on every other
        # authenticated answer (SPEC 1.5).
        headers = api_limit_headers("rate_limit_check", result.api, result.now_ms)
    if result.degraded and batch.receipt is not None:
        write_receipt_now(
            StoredReceipt(
                f"degraded-{receipt_id}",
                req.tenant_id,
                receipt_id,
                batch.receipt.facts,
                _degraded_result_text(result, receipt_id),
                result.now_ms,
            ),
            degraded=True,
        )
    if not req.dry_run and not result.allowed:
        _emit_violations(req, policies, result, correlation_id)
    outcome = "degraded" if result.degraded else ("allowed" if result.allowed else "denied")
    metrics.DECISIONS.labels(GATE, outcome).inc()
    metrics.RATE_LIMIT_CHECK_DURATION.observe(time.perf_counter() - started)
    status = 200 if result.allowed else settings.RATELIMIT_DENY_STATUS
    return CheckAnswer(body, headers, status)


def _replayed_answer(req: CheckRequest, result: CheckResult, batch: CheckBatch) -> CheckAnswer:
    """The first answer again, rebuilt from the facts and decision stored with the key."""
    facts = json.loads(result.replay_facts or "{}")
    stored = facts.get("policies", [])
    snaps = [
        PolicySnap(
            id=p["policy_id"],
            version=int(p["version"]),
            scope_type="",
            scope_id="",
            resource_type="",
            limit_value=int(p["limit_value"]),
            time_window_seconds=int(p["time_window_seconds"]),
            algorithm=p["algorithm"],
            burst_capacity=0,
            overrides={},
            mode=p["mode"],
            fail_mode="open",
            usage_factor=Decimal(1),
            policy_name="",
        )
        for p in stored
    ]
    items = result.replay_items or []
    decisions = tuple(
        Decision(
            item[0] == 1,
            int(p["effective_limit"]),
            item[1],
            item[2],
            item[3],
            item[4],
            p["mode"] == "shadow",
            f"{p['policy_id']}@{p['version']}",
        )
        for p, item in zip(stored, items, strict=True)
    )
    first = CheckResult(
        outcome=Outcome.REPLAYED,
        now_ms=result.now_ms,
        allowed=result.allowed,
        decisions=decisions,
        shadow_denied=any(d.shadow and not d.allowed for d in decisions),
    )
    body, headers = _render(
        req, snaps, first, result.receipt_id or "", facts.get("correlation_id", ""), batch
    )
    if not headers and result.api is not None:
        headers = api_limit_headers("rate_limit_check", result.api, result.now_ms)
    headers["Idempotent-Replayed"] = "true"
    return CheckAnswer(body, headers, 200 if result.allowed else settings.RATELIMIT_DENY_STATUS)


def _degraded_result_text(result: CheckResult, receipt_id: str) -> str:
    items = [
        [1 if d.allowed else 0, d.remaining, d.reset_ms, d.retry_ms, d.delay_ms]
        for d in result.decisions
    ]
    return encode_decided(result.now_ms, result.allowed, None, items, receipt_id)


def _render(
    req: CheckRequest,
    policies: Sequence[PolicySnap],
    result: CheckResult,
    receipt_id: str,
    correlation_id: str,
    batch: CheckBatch,
) -> tuple[dict[str, Any], dict[str, str]]:
    verdicts = []
    for p, d in zip(policies, result.decisions, strict=True):
        verdicts.append(
            {
                "policy_id": p.id,
                "policy_version": p.version,
                "algorithm": p.algorithm,
                "mode": p.mode,
                "allowed": d.allowed,
                "limit_value": d.limit,
                "remaining_requests": d.remaining,
                "reset_time": _iso(d.reset_ms),
                "retry_after": d.retry_after,
                "delay_seconds": d.delay_seconds,
            }
        )
    deciding = result.deciding
    deciding_policy = None
    if deciding is not None:
        deciding_policy = next(p for p in policies if p.version_id == deciding.ref)
    body: dict[str, Any] = {
        "allowed": result.allowed,
        "remaining_requests": deciding.remaining if deciding else None,
        "reset_time": _iso(deciding.reset_ms) if deciding else None,
        "limit_value": deciding.limit if deciding else None,
        "retry_after": deciding.retry_after if deciding and not result.allowed else None,
        "delay_seconds": max(
            (d.delay_seconds for d in result.decisions if not d.shadow), default=0.0
        ),
        "policy_id": deciding_policy.id if deciding_policy else None,
        "policies": verdicts,
        "shadow_denied": result.shadow_denied,
        "degraded": result.degraded,
        "receipt_id": receipt_id,
        "correlation_id": correlation_id,
    }
    headers: dict[str, str] = {}
    if deciding is not None and deciding_policy is not None:
        headers = limit_headers(
            name=deciding_policy.id,
            limit=deciding.limit,
            window=deciding_policy.time_window_seconds,
            decision=deciding,
            now_ms=result.now_ms,
        )
        if result.allowed:
            headers.pop("Retry-After", None)
    return body, headers


# --- rate_limit_violated, at most once per policy, key and minute --------------------------------

_recent_marks: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()
_RECENT_MAX = 10_000


def _emit_violations(
    req: CheckRequest, policies: Sequence[PolicySnap], result: CheckResult, correlation_id: str
) -> None:
    from events.services import publish_event

    minute = clock.now().replace(second=0, microsecond=0)
    for p, d in zip(policies, result.decisions, strict=True):
        if d.allowed or d.shadow:
            continue
        resource_key = req.resource_key or p.scope_id
        mark = (req.tenant_id, p.id, resource_key, minute.isoformat())
        if mark in _recent_marks:
            continue  # this process already emitted it this minute: no database round trip
        _recent_marks[mark] = None
        if len(_recent_marks) > _RECENT_MAX:
            _recent_marks.popitem(last=False)
        try:
            with transaction.atomic():
                ViolationMark.objects.create(
                    tenant_id=req.tenant_id,
                    policy_id=p.id,
                    resource_key=resource_key[:255],
                    minute=minute,
                )
                publish_event(
                    tenant_id=req.tenant_id,
                    event_type="rate_limit_violated",
                    payload={
                        "policy_id": p.id,
                        "resource_key": resource_key,
                        "current_rate": max(0, d.limit - d.remaining),
                        "limit": d.limit,
                        "reset_time": _iso(d.reset_ms),
                        "retry_after": d.retry_after,
                    },
                    correlation_id=correlation_id,
                )
        except IntegrityError:
            continue  # another process emitted it this minute
        except Exception:
            logger.exception("ratelimit.violation_event_failed", extra={"policy_id": p.id})


# --- receipts -----------------------------------------------------------------------------------


def _draft(stored: StoredReceipt, *, degraded: bool = False) -> ReceiptDraft:
    facts = json.loads(stored.facts) if stored.facts else {}
    now_ms, allowed, _api, items, _rid = decode_decided(stored.result)
    policies = facts.get("policies", [])
    verdicts = []
    shadow_denied = False
    for i, item in enumerate(items):
        p = policies[i] if i < len(policies) else {}
        ok = item[0] == 1
        if p.get("mode") == "shadow" and not ok:
            shadow_denied = True
        verdicts.append(
            {
                "policy_id": p.get("policy_id"),
                "allowed": ok,
                "limit_value": p.get("effective_limit"),
                "remaining_requests": item[1],
                "reset_time": _iso(item[2]),
                "retry_after": None if ok else max(1, -(-item[3] // 1000)),
                "delay_seconds": item[4] / 1000,
            }
        )
    status = ("warn" if shadow_denied else "pass") if allowed else "hard_block"
    return ReceiptDraft(
        tenant_id=stored.tenant,
        gate_id=GATE,
        inputs=facts.get("inputs", {}),
        result={"allowed": allowed, "policies": verdicts, "shadow_denied": shadow_denied},
        decision_status=status,
        rationale=("allowed" if allowed else "denied") + (" (degraded)" if degraded else ""),
        badges=[f"rate_limit_{'allowed' if allowed else 'denied'}"]
        + (["shadow_denied"] if shadow_denied else []),
        policy_version_ids=[f"{p['policy_id']}@{p['version']}" for p in policies],
        actor=facts.get("actor") or system_actor("ratelimits.check"),
        degraded=degraded,
        receipt_id=uuid.UUID(stored.receipt_id),
        timestamp_utc=datetime.fromtimestamp(now_ms / 1000, tz=UTC),
    )


def write_receipt_now(stored: StoredReceipt, *, degraded: bool = False) -> None:
    """Sign and store one check's receipt in the caller's transaction (database store)."""
    try:
        emit_receipts_bulk([_draft(stored, degraded=degraded)], skip_existing=True)
    except Exception:
        if not degraded:
            raise
        logger.exception(
            "ratelimit.degraded_receipt_failed", extra={"receipt_id": stored.receipt_id}
        )


_last_full_scan = 0.0
FULL_SCAN_EVERY_SECONDS = 60.0


def drain_receipts(
    *, limit_per_tenant: int = 1000, store: Store | None = None, full_scan: bool | None = None
) -> int:
    """Sign and store the receipts the checks left in the store; safe to run twice.

    Tenants come from the store's index of non-empty streams; once a minute (or when asked)
    a full scan also finds any stream whose registration was lost (a process that died between
    its check and the index update).
    """
    global _last_full_scan
    store = store or runtime.policy_store()
    try:
        tenants = set(store.receipt_tenants())
    except NotImplementedError:
        return 0
    if full_scan is None:
        full_scan = time.monotonic() - _last_full_scan >= FULL_SCAN_EVERY_SECONDS
    if full_scan:
        _last_full_scan = time.monotonic()
        tenants.update(scan_receipt_streams(store))
    written = 0
    for tenant in sorted(tenants):
        while True:
            entries = store.read_receipts(tenant, limit_per_tenant)
            if not entries:
                break
            drafts = []
            for entry in entries:
                try:
                    drafts.append(_draft(entry))
                except Exception:
                    logger.exception(
                        "ratelimit.receipt_undecodable", extra={"entry_id": entry.entry_id}
                    )
            written += len(emit_receipts_bulk(drafts, skip_existing=True))
            store.ack_receipts(tenant, [e.entry_id for e in entries])
            if len(entries) < limit_per_tenant:
                break
    return written


def scan_receipt_streams(store: Store | None = None) -> list[str]:
    store = store or runtime.policy_store()
    scan = getattr(store, "scan_receipt_tenants", None)
    return list(scan()) if scan is not None else []


# --- usage pattern factors ----------------------------------------------------------------------


def adjust_usage_factors(*, at: datetime | None = None) -> int:
    """Set each policy's usage factor from its use over its look-back (SPEC 3.3)."""
    at = at or clock.now()
    changed = 0
    tenants: set[str] = set()
    for policy in RateLimitPolicy.objects.filter(enabled=True).iterator():
        config = (policy.overrides or {}).get("usage_pattern_analysis")
        if not config or not config.get("enabled"):
            continue
        try:
            lookback = int(config.get("lookback_seconds") or policy.time_window_seconds)
            used = selectors.usage_over(
                tenant_id=policy.tenant_id,
                policy_id=policy.pk,
                since=at - timedelta(seconds=lookback),
            )
            factor = usage_factor(
                config,
                used=used,
                limit_value=policy.limit_value,
                window_seconds=policy.time_window_seconds,
            )
        except (ArithmeticError, ValueError, TypeError, OverflowError):
            # One policy's unusable settings must not stop the job for every other policy.
            logger.exception("ratelimit.usage_factor_failed", extra={"policy_id": str(policy.pk)})
            continue
        if factor != policy.usage_factor:
            RateLimitPolicy.objects.filter(pk=policy.pk).update(
                usage_factor=factor, usage_factor_updated_at=at
            )
            tenants.add(policy.tenant_id)
            changed += 1
    for tenant_id in tenants:
        with transaction.atomic():
            _after_commit_bump(tenant_id)
    return changed


def purge_violation_marks(*, before: datetime) -> int:
    deleted, _ = ViolationMark.objects.filter(minute__lt=before).delete()
    return deleted
