"""Running jobs: a best-effort nudge after commit, and the in-process scheduler of the
embedded default (no broker: the beat schedule runs on a thread of the serving process)."""

import contextlib
import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from budgeting_site.platform.metrics import JOB_RUNS

logger = logging.getLogger(__name__)

_nudges: "queue.Queue[tuple[str, tuple[Any, ...]]]" = queue.Queue(maxsize=1000)


def enqueue(task_name: str, *args: Any) -> None:
    """Ask for a task to run soon. Never raises and never blocks: the beat schedule is the
    guarantee, this only makes things sooner. With a broker, a sender thread publishes, so a
    slow or blackholed broker never holds a request."""
    with contextlib.suppress(queue.Full):
        _nudges.put_nowait((task_name, args))
    if not settings.JOBS_IN_PROCESS:
        _ensure_sender()


_sender_lock = threading.Lock()
_sender: threading.Thread | None = None


def _ensure_sender() -> None:
    global _sender
    if _sender is not None and _sender.is_alive():
        return
    with _sender_lock:
        if _sender is None or not _sender.is_alive():
            _sender = threading.Thread(target=_send_nudges, name="job-nudges", daemon=True)
            _sender.start()


def _send_nudges() -> None:
    from budgeting_site.celery import app

    while True:
        task_name, args = _nudges.get()
        try:
            app.send_task(task_name, args=args, retry=False)
        except Exception:  # a broker outage must not fail anything
            logger.warning("jobs.nudge_failed", extra={"task": task_name}, exc_info=True)


def run_task(task_name: str, *args: Any) -> None:
    from budgeting_site.celery import app

    task = app.tasks.get(task_name)
    if task is None:
        logger.error("jobs.unknown_task", extra={"task": task_name})
        JOB_RUNS.labels(task_name, "unknown").inc()
        return
    try:
        task.run(*args)
        JOB_RUNS.labels(task_name, "ok").inc()
    except Exception:
        logger.exception("jobs.failed", extra={"task": task_name})
        JOB_RUNS.labels(task_name, "error").inc()
    finally:
        close_old_connections()


class InProcessScheduler(threading.Thread):
    """The beat schedule on a daemon thread, for the embedded default."""

    def __init__(self, tick_seconds: float = 0.5) -> None:
        super().__init__(name="in-process-scheduler", daemon=True)
        self.tick_seconds = tick_seconds
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        from budgeting_site.celery import BEAT_SCHEDULE, app

        app.loader.import_default_modules()
        last_run: dict[str, datetime] = {}
        while not self._stop_event.is_set():
            for name, entry in BEAT_SCHEDULE.items():
                schedule = entry["schedule"]
                if not hasattr(schedule, "is_due"):
                    from celery.schedules import schedule as every

                    schedule = every(schedule)
                    entry["schedule"] = schedule
                previous = last_run.get(name)
                if previous is None:
                    due = True
                else:
                    due, _ = schedule.is_due(previous)
                if due:
                    last_run[name] = datetime.now(UTC)
                    run_task(entry["task"], *entry.get("args", ()))
            deadline = time.monotonic() + self.tick_seconds
            while time.monotonic() < deadline:
                try:
                    task_name, args = _nudges.get(timeout=max(deadline - time.monotonic(), 0.01))
                except queue.Empty:
                    break
                run_task(task_name, *args)
