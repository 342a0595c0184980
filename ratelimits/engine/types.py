"""Value types shared by the algorithms and every store.

Everything here is immutable input (what to decide) or plain output (what was decided). Times
are integer milliseconds since the Unix epoch; the engine never uses floats for state.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd

# Lua numbers are IEEE doubles: integers are exact up to 2**53, so every quantity the Redis
# script handles must stay below it. Limits this large are refused when compiled.
MAX_EXACT = 2**53
#: Limits, bursts, drain rates and request counts are capped here, so that any sum of two of
#: them stays an exact integer in a double.
MAX_COUNT = 2**51


class Algorithm(enum.StrEnum):
    FIXED_WINDOW = "fixed_window"
    SLIDING_WINDOW_LOG = "sliding_window_log"
    TOKEN_BUCKET = "token_bucket"
    LEAKY_BUCKET = "leaky_bucket"

    @property
    def code(self) -> int:
        return _ALGORITHM_CODES[self]

    @property
    def is_bucket(self) -> bool:
        return self in (Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET)


_ALGORITHM_CODES = {
    Algorithm.FIXED_WINDOW: 1,
    Algorithm.SLIDING_WINDOW_LOG: 2,
    Algorithm.TOKEN_BUCKET: 3,
    Algorithm.LEAKY_BUCKET: 4,
}

# Short tags used in store keys, so that a policy whose algorithm changes never meets a key of
# the wrong Redis type (a sorted set where a string is expected).
ALGORITHM_KEY_TAGS = {
    Algorithm.FIXED_WINDOW: "fw",
    Algorithm.SLIDING_WINDOW_LOG: "sl",
    Algorithm.TOKEN_BUCKET: "tb",
    Algorithm.LEAKY_BUCKET: "lb",
}


class FailMode(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Outcome(enum.StrEnum):
    DECIDED = "decided"
    """Every limit was evaluated; `allowed` says whether all admitted (and all consumed)."""
    API_LIMITED = "api_limited"
    """This API's own limit refused the caller: nothing else was evaluated or consumed."""
    STALE_POLICIES = "stale_policies"
    """The caller's policy epoch is out of date: reload the policies and ask again."""
    REPLAYED = "replayed"
    """The idempotency key was seen with the same fingerprint: the stored result is returned."""
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
    """The idempotency key was seen with a different fingerprint: nothing was evaluated."""


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One limit to decide: a policy as it applies to this request, or this API's own limit.

    `limit` is the effective limit L of SPEC 3.3 for this request (priority included), `burst`
    is B. `drain_limit` is the number of requests per window at which a bucket's level drains
    (default: `limit`); the Django layer passes the policy-wide value (no priority, no
    emergency extra) so that one level drains at one rate whatever the caller's priority.
    `key` identifies the counter inside the tenant, e.g. ``"<policy_id>:<resource_key>"``;
    it is shared by every request that names it, whatever their priority.
    """

    key: str
    algorithm: Algorithm
    limit: int
    window_seconds: int
    burst: int = 0
    drain_limit: int | None = None
    cost: int = 1
    shadow: bool = False
    fail_mode: FailMode = FailMode.OPEN
    ref: str = ""
    """Opaque to the engine (e.g. ``"<policy_id>@<version>"``); carried into the decision."""

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("key must not be empty")
        if self.limit < 1:
            raise ValueError("limit must be >= 1")
        if self.window_seconds < 1:
            raise ValueError("window_seconds must be >= 1")
        if self.burst < 0:
            raise ValueError("burst must be >= 0")
        if self.cost < 1:
            raise ValueError("cost must be >= 1")
        if self.drain_limit is not None and self.drain_limit < 1:
            raise ValueError("drain_limit must be >= 1")


@dataclass(frozen=True, slots=True)
class Compiled:
    """A LimitSpec reduced to the integers the algorithms work with.

    Bucket levels are kept in integer units so that draining is exact: one request weighs
    `unit` units and the level drains by `drain` units per millisecond, where
    unit / drain == window_ms / drain_limit (the fraction reduced by its gcd).
    """

    algorithm: Algorithm
    n: int
    limit: int
    burst: int
    window_ms: int
    unit: int
    drain: int

    @property
    def capacity_units(self) -> int:
        return (self.limit + self.burst) * self.unit


def _units(window_ms: int, drain_limit: int) -> tuple[int, int]:
    g = gcd(drain_limit, window_ms)
    return window_ms // g, drain_limit // g


def exactly_decidable(spec: LimitSpec) -> bool:
    """Whether `spec`, as given, can be decided without lowering anything (see compile_spec).

    For validating a policy when it is written: a bucket holds (limit + burst + n) x unit
    units, which must stay below 2**53 for the Lua script's doubles to be exact.
    """
    if spec.limit + spec.burst + spec.cost >= MAX_COUNT:
        return False
    if not spec.algorithm.is_bucket:
        return True
    drain_limit = spec.drain_limit if spec.drain_limit is not None else spec.limit
    unit, _ = _units(spec.window_seconds * 1000, min(drain_limit, MAX_COUNT))
    return (spec.limit + spec.burst + spec.cost) * unit < MAX_EXACT


def compile_spec(spec: LimitSpec, *, sliding_log_max: int | None = None) -> Compiled:
    """The integers of one check. Total for every valid spec: nothing here raises for size.

    - A request of n > L + B can never be admitted, and every answer for it (denied,
      remaining, reset, retry) is the same as for n = L + B + 1: n is capped there, so a huge
      `request_count` costs neither memory (a sliding log's n entries) nor exactness.
    - Limits, bursts and drain rates are capped at MAX_COUNT (2**51) so sums stay exact.
    - A bucket whose (L + B + n) x unit would reach 2**53 has its limit (then its burst)
      lowered to the largest that is exact; the decision carries the limit actually applied.
      Policies are validated when written (`exactly_decidable`), so only factors applied at
      check time (priority, emergency capacity, time of day) can get here.
    """
    limit = min(spec.limit, MAX_COUNT)
    burst = min(spec.burst, MAX_COUNT)
    if spec.algorithm is Algorithm.SLIDING_WINDOW_LOG and sliding_log_max is not None:
        # A log holds one member per admitted request: its size is what is capped.
        limit = min(limit, sliding_log_max)
    window_ms = spec.window_seconds * 1000
    drain_limit = spec.drain_limit if spec.drain_limit is not None else spec.limit
    unit, drain = _units(window_ms, min(drain_limit, MAX_COUNT))
    if spec.algorithm.is_bucket:
        # Units for limit + burst, plus room for n <= limit + burst + 1 on top.
        room = ((MAX_EXACT - 1) // unit - 1) // 2
        if limit + burst > room:
            limit = max(1, min(limit, room))
            burst = max(0, min(burst, room - limit))
    n = min(spec.cost, limit + burst + 1)
    compiled = Compiled(spec.algorithm, n, limit, burst, window_ms, unit, drain)
    biggest = (compiled.capacity_units + n * unit) if spec.algorithm.is_bucket else 0
    if biggest >= MAX_EXACT:
        # Only a window of tens of thousands of years gets here.
        raise ValueError(
            "limit, burst and window are too large to be decided exactly "
            f"({biggest} >= 2**53 units); use a shorter window"
        )
    return compiled


@dataclass(frozen=True, slots=True)
class IdempotencySpec:
    """An idempotency key checked and stored in the same atomic step as the decision.

    A key already stored with the same `fingerprint` replays the stored result (nothing is
    evaluated or consumed again); with another fingerprint the outcome is a mismatch. Only a
    DECIDED outcome is stored (a refusal by this API's own limit frees the key for a retry).
    The stored value carries the receipt facts too, so a caller can rebuild the first answer
    even after its policies changed (`CheckResult.replay_facts`, `replay_items`).
    """

    key: str
    fingerprint: str
    ttl_seconds: int = 86_400
    store_denials: bool = True
    """False: a denied decision is not kept (a caller that answers denials with 429 frees the
    key for a retry, as SPEC 1.4 wants)."""


@dataclass(frozen=True, slots=True)
class ReceiptSpec:
    """The facts of a decision, stored by the same atomic step that makes the decision.

    `facts` is an opaque text (the Django layer passes canonical JSON of the inputs, actor,
    policy versions, correlation id). The store appends ``{receipt_id, facts, result, ts}`` to
    the tenant's receipt stream, where `result` is the engine's encoded decision; a worker
    later signs and stores receipts in bulk. Written for DECIDED outcomes only.
    """

    receipt_id: str
    facts: str


@dataclass(frozen=True, slots=True)
class CheckBatch:
    """Everything decided in one atomic step for one tenant.

    - `limits`: every matching policy; admitted only if every non-shadow limit admits, and
      then every admitting limit consumes (shadow ones too). A denied check consumes nothing.
    - `api_limit`: this API's own per-tenant limit (SPEC 1.5), decided first. When it refuses,
      the outcome is API_LIMITED and nothing else is evaluated; when it admits it consumes,
      whatever the policies decide (the caller did make a request).
    - `expected_epoch`: the tenant's policy epoch the caller's cached policies were loaded
      at; a different current value gives STALE_POLICIES before anything is evaluated.
    - `idempotency`, `receipt`: see their classes.
    - `dry_run`: evaluate without consuming (this API's own limit still consumes).
    """

    tenant: str
    limits: Sequence[LimitSpec] = ()
    api_limit: LimitSpec | None = None
    expected_epoch: int | None = None
    idempotency: IdempotencySpec | None = None
    receipt: ReceiptSpec | None = None
    dry_run: bool = False

    def __post_init__(self) -> None:
        if not self.tenant:
            raise ValueError("tenant must not be empty")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one algorithm decided for one limit, with the state to write if it consumes."""

    allowed: bool
    remaining: int
    reset_ms: int
    retry_ms: int
    delay_ms: int


# Results are plain (not frozen) dataclasses: they are built on every check, and a frozen
# dataclass pays an object.__setattr__ per field.
@dataclass(slots=True)
class Decision:
    """One limit's answer. Times in ms since the epoch; convenience views in seconds."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int
    retry_ms: int
    delay_ms: int
    shadow: bool = False
    ref: str = ""
    key: str = ""
    degraded: bool = False

    @property
    def reset_time(self) -> int:
        """Unix time in whole seconds, rounded up, at which the limit resets."""
        return -(-self.reset_ms // 1000)

    @property
    def retry_after(self) -> int | None:
        """Whole seconds >= 1 when denied, else None."""
        if self.allowed:
            return None
        return max(1, math.ceil(self.retry_ms / 1000))

    @property
    def delay_seconds(self) -> float:
        return self.delay_ms / 1000


@dataclass(slots=True)
class CheckResult:
    outcome: Outcome
    now_ms: int
    allowed: bool
    decisions: tuple[Decision, ...] = ()
    api: Decision | None = None
    epoch: int | None = None
    degraded: bool = False
    degraded_reason: str | None = None
    receipt_id: str | None = None
    receipt_written: bool = False
    shadow_denied: bool = False
    replay_facts: str | None = None
    """REPLAYED: the receipt facts stored with the first decision."""
    replay_items: list[list[int]] | None = None
    """REPLAYED: the first decision's items, in the order of the first check's limits."""

    @property
    def deciding(self) -> Decision | None:
        """The policy that decided.

        When denied: the denying policy the caller must wait longest for. When admitted: the
        tightest one (least remaining, then earliest reset).
        """
        enforcing = [d for d in self.decisions if not d.shadow]
        if not enforcing:
            return None
        denied = [d for d in enforcing if not d.allowed]
        if denied:
            return max(denied, key=lambda d: d.retry_ms)
        return min(enforcing, key=lambda d: (d.remaining, d.reset_ms))

    @property
    def remaining(self) -> int | None:
        d = self.deciding
        return None if d is None else d.remaining
