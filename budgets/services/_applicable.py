"""The applicable budget definitions of a check, cached per process and proved current inside
the check's own locking statement (PostgreSQL).

A check needs the definitions (amount, period type, dates, enforcement, thresholds, name) of
every budget that applies to its targets before it can name the period rows to lock. Reading
them costs a statement and, in Python, the ORM's query compilation, on every check; they change
a few times a day. So on PostgreSQL they are kept in this process, keyed by tenant and targets,
together with a fingerprint: the md5 of the text of every applicable budget row, in id order.
The locking SELECT of the check computes the same fingerprint over the same filter at its own
instant (`fingerprint_sql`): if it differs — a budget was created, replaced, deleted, ended or
started since — the transaction is rolled back, the definitions are read again and the check
runs again. A stale definition therefore never decides anything; the cache only saves the
read when nothing changed. The fingerprint covers whole rows, so even a write that bypasses the
services (a shell, a migration) is seen.

On SQLite (one process, the embedded default) nothing is cached: the definitions are read on
every check, as before.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from budgets import selectors
from budgets.models import Budget

#: Entries kept per process (tenant x target combinations); the oldest is dropped first.
MAX_ENTRIES = 4096

_lock = threading.Lock()
_entries: "OrderedDict[tuple[str, frozenset[tuple[str, str]]], Definitions]" = OrderedDict()


@dataclass(frozen=True)
class Definitions:
    budgets: tuple[Budget, ...]
    #: The fingerprint the budgets were read with; None: not checked (SQLite, or none apply).
    fingerprint: str | None


class DefinitionsChanged(Exception):
    """Raised inside a check's transaction when the locking statement's fingerprint differs
    from the one the definitions were read with: roll back, read again, run again."""


def enabled() -> bool:
    return connection.vendor == "postgresql"


def _filter_sql(alias: str, tenant_id: str, at: datetime, targets: set[tuple[str, str]]):
    """The WHERE of `selectors.applicable_budgets`, as SQL over `alias`: tenant-level or one of
    the targets, not deleted, active at `at`. Targets are sorted so the text is stable."""
    params: list[object] = [tenant_id, at, at]
    match = [f"{alias}.allocated_to_type = 'tenant'"]
    for kind, target_id in sorted(targets):
        match.append(f"({alias}.allocated_to_type = %s AND {alias}.allocated_to_id = %s)")
        params += [kind, target_id]
    sql = (
        f"{alias}.tenant_id = %s AND {alias}.deleted_at IS NULL AND {alias}.start_date <= %s "
        f"AND ({alias}.end_date IS NULL OR {alias}.end_date > %s) AND ({' OR '.join(match)})"
    )
    return sql, params


def fingerprint_sql(tenant_id: str, at: datetime, targets: set[tuple[str, str]]):
    """A scalar subquery: md5 of every applicable budget row's text in id order (NULL when
    none applies). The load and the locking statement use this same text."""
    where, params = _filter_sql("fp_b", tenant_id, at, targets)
    table = Budget._meta.db_table
    sql = (
        f"(SELECT md5(string_agg(fp_b::text, ',' ORDER BY fp_b.id)) "  # noqa: S608
        f"FROM {table} AS fp_b WHERE {where})"
    )
    return sql, params


def _load(tenant_id: str, at: datetime, targets: set[tuple[str, str]]) -> Definitions:
    """The budgets and their fingerprint from one statement (one snapshot)."""
    where, params = _filter_sql("b", tenant_id, at, targets)
    fp_sql, fp_params = fingerprint_sql(tenant_id, at, targets)
    table = Budget._meta.db_table
    rows = list(
        Budget.objects.raw(
            f"SELECT b.*, {fp_sql} AS budget_fingerprint FROM {table} AS b "  # noqa: S608
            f"WHERE {where} ORDER BY b.created_at DESC, b.id DESC",
            [*fp_params, *params],
        )
    )
    fingerprint = rows[0].budget_fingerprint if rows else None
    return Definitions(budgets=tuple(rows), fingerprint=fingerprint)


def applicable(
    *, tenant_id: str, at: datetime, targets: set[tuple[str, str]], fresh: bool = False
) -> Definitions:
    """The budgets that apply to `targets` at `at` (see `selectors.applicable_budgets`).
    `fresh`: skip the cache (after a `DefinitionsChanged`)."""
    if not enabled():
        budgets = selectors.applicable_budgets(tenant_id=tenant_id, at=at, targets=targets)
        return Definitions(budgets=tuple(budgets), fingerprint=None)
    key = (tenant_id, frozenset(targets))
    if not fresh:
        with _lock:
            hit = _entries.get(key)
            if hit is not None:
                _entries.move_to_end(key)
                return hit
    loaded = _load(tenant_id, at, targets)
    if loaded.fingerprint is not None:
        with _lock:
            _entries[key] = loaded
            _entries.move_to_end(key)
            while len(_entries) > MAX_ENTRIES:
                _entries.popitem(last=False)
    return loaded


def forget(tenant_id: str | None = None) -> None:
    """Drop cached definitions (of one tenant, or all). Budget writes of this process call it
    after commit; other processes find out through the fingerprint."""
    with _lock:
        if tenant_id is None:
            _entries.clear()
            return
        for key in [k for k in _entries if k[0] == tenant_id]:
            del _entries[key]
