"""Session fixtures of the system suite: one real stack for the whole session.

`make test` runs the bounded form; `make proof` (PROOF_FULL=1) the full one. The stack needs
PostgreSQL on 127.0.0.1:5432 (trust auth, as on the CI machine) and a redis-server binary;
without them these tests skip, and under CI=true that is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.system.stack import Stack, StackConfig, postgres_available

PROOF_FULL = os.environ.get("PROOF_FULL", "") not in ("", "0", "false")
IN_CI = os.environ.get("CI", "").lower() == "true"

TENANT = "t-sys-acme"
OTHER_TENANT = "t-sys-globex"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/system/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.system)


def _require_services() -> None:
    missing = []
    if shutil.which("redis-server") is None:
        missing.append("redis-server binary")
    if not postgres_available():
        missing.append("PostgreSQL on 127.0.0.1:5432")
    if missing:
        reason = "system suite needs " + ", ".join(missing)
        if IN_CI:
            pytest.fail(reason + " (CI=true: this suite must run)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    _require_services()
    s = Stack(StackConfig(api_rate_limits="off"))
    try:
        s.start()
    except Exception:
        print(s.logs())
        s.stop()
        raise
    try:
        yield s
    finally:
        if os.environ.get("SYSTEM_PRINT_LOGS"):
            print(s.logs())
        s.stop()


@pytest.fixture
def healthy_stack(stack: Stack) -> Iterator[Stack]:
    """The stack with every proxy passing and every process up, before and after a test."""
    _heal(stack)
    yield stack
    _heal(stack)


def _heal(stack: Stack) -> None:
    for proxy in (stack.redis_proxy, stack.broker_proxy, stack.pg_proxy):
        if proxy is not None:
            proxy.set_mode("pass")
    if not stack.redis.process.running():
        stack.redis.start()
    assert stack.worker is not None and stack.beat is not None
    if not stack.worker.running():
        stack.start_worker()
    if not stack.beat.running():
        stack.start_beat()
    stack.set_clock_offset(0)


@pytest.fixture(scope="session")
def examples() -> int:
    """Hypothesis examples per operation: bounded in CI, larger for `make proof`."""
    return int(os.environ.get("SYSTEM_EXAMPLES", "60" if PROOF_FULL else "8"))


@pytest.fixture(autouse=True, scope="session")
def _quiet_http_logs():
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed system test carries the tails of the stack's logs in its report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    stack = funcargs.get("healthy_stack") or funcargs.get("stack")
    if stack is not None:
        report.sections.append(("stack logs (tails)", stack.logs()))
