"""The real stack on loopback ports, started from the repository's own code.

gunicorn (2 sync workers), a Celery worker, Celery beat, a private redis-server with AOF and a
fresh PostgreSQL database (created, migrated with ``manage.py migrate``, dropped at the end).
The application reaches Redis (cache and rate-limit store), the broker and PostgreSQL only
through `FaultProxy` instances, so faults are injected on the stack's own connections.

Used by ``tests/system/conftest.py`` and by ``bench/load`` (which starts it without proxies).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg

from tests.system.faultproxy import FaultProxy

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SHIM = Path(__file__).resolve().parent / "shim"

PG_HOST = os.environ.get("SYSTEM_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("SYSTEM_PG_PORT", "5432"))
PG_USER = os.environ.get("SYSTEM_PG_USER", "root")
PG_ADMIN_DB = os.environ.get("SYSTEM_PG_ADMIN_DB", "postgres")

JWT_SECRET = "system-test-jwt-secret-" + "0123456789abcdef" * 2
SECRET_KEY = "system-test-django-secret-" + "fedcba9876543210" * 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_admin() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, autocommit=True
    )


def postgres_available() -> bool:
    try:
        with pg_admin() as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def wait_for(predicate: Any, *, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")


class Process:
    """One child process in its own session, so it and its children are ended by its id."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> None:
        if self.running():
            return
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        fh.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_since_start(self) -> str:
        if not self.log.exists():
            return ""
        with self.log.open("rb") as fh:
            fh.seek(self._log_offset)
            return fh.read().decode("utf-8", "replace")

    def wait_log(self, needle: str, timeout: float = 30) -> None:
        def seen() -> bool:
            if not self.running():
                raise RuntimeError(f"{self.name} exited:\n{self.log_since_start()[-4000:]}")
            return needle in self.log_since_start()

        wait_for(seen, timeout=timeout, interval=0.1, what=f"{self.name}: {needle!r}")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash, not a shutdown."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        if not self.running():
            return
        self.signal(signal.SIGTERM)
        try:
            assert self.proc is not None
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        # Children (prefork pool, gunicorn workers) go with the group.
        self.signal(signal.SIGKILL)


class RedisServer:
    """A private redis-server with AOF (appendfsync everysec), restartable on the same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process = Process(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--maxclients",
                "2000",
            ],
            dict(os.environ),
            self.dir / "redis.log",
        )

    def start(self) -> None:
        self.process.start()

        def pong() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(pong, timeout=15, what="redis-server PONG")

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


@dataclass
class StackConfig:
    api_rate_limits: str = "off"
    proxies: bool = True
    gunicorn_workers: int = 2
    celery_concurrency: int = 2
    beat: bool = True
    worker: bool = True
    clock_offset: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    #: settings of the gunicorn processes (bench/load adds its reference views this way)
    web_settings: str = "budgeting_site.settings"
    db_prefix: str = "sys_stack"


class Stack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.tmp = Path(tempfile.mkdtemp(prefix="sysstack-"))
        self.db_name = f"{self.config.db_prefix}_{uuid.uuid4().hex[:10]}"
        self.redis = RedisServer(self.tmp / "redis")
        self.redis_proxy: FaultProxy | None = None
        self.broker_proxy: FaultProxy | None = None
        self.pg_proxy: FaultProxy | None = None
        self.http_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.api = f"{self.base_url}/budget/v1"
        self.clock_file = self.tmp / "clock-offset"
        self.beat_schedule = self.tmp / "celerybeat-schedule"
        self.env: dict[str, str] = {}
        self.gunicorn: Process | None = None
        self.worker: Process | None = None
        self.beat: Process | None = None
        self._started = False

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> Stack:
        self.redis.start()
        if self.config.proxies:
            self.redis_proxy = FaultProxy("127.0.0.1", self.redis.port, name="redis")
            self.broker_proxy = FaultProxy("127.0.0.1", self.redis.port, name="broker")
            self.pg_proxy = FaultProxy(PG_HOST, PG_PORT, name="pg")
            redis_port = self.redis_proxy.port
            broker_port = self.broker_proxy.port
            pg_host, pg_port = "127.0.0.1", self.pg_proxy.port
        else:
            redis_port = broker_port = self.redis.port
            pg_host, pg_port = PG_HOST, PG_PORT
        with pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self._started = True
        self.clock_file.write_text("0")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "PYTEST", "CELERY_", "API_RATE", "RATELIMIT_"))
            and k not in {"DATABASE_URL", "REDIS_URL", "JWT_SECRET", "COV_CORE_SOURCE"}
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "budgeting_site.settings",
                "DATABASE_URL": f"postgres://{PG_USER}@{pg_host}:{pg_port}/{self.db_name}",
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "CELERY_BROKER_URL": f"redis://127.0.0.1:{broker_port}/1",
                "DJANGO_DEBUG": "false",
                "DJANGO_SECURE": "false",
                "DJANGO_SECRET_KEY": SECRET_KEY,
                "JWT_SECRET": JWT_SECRET,
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "API_RATE_LIMITS": self.config.api_rate_limits,
                "WEBHOOK_ALLOW_PRIVATE_URLS": "true",
                # Every process's metrics on the web's /metrics (worker counters included).
                "PROMETHEUS_MULTIPROC_DIR": str(self.tmp / "prometheus"),
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(
                    ([str(SHIM)] if self.config.clock_offset else []) + [str(REPO)]
                ),
            }
        )
        if self.config.clock_offset:
            env["SYSTEM_CLOCK_OFFSET_FILE"] = str(self.clock_file)
        env.update(self.config.extra_env)
        self.env = env
        self.manage("migrate", "--noinput", timeout=300)
        gunicorn_env = {**env, "DJANGO_SETTINGS_MODULE": self.config.web_settings}
        self.gunicorn = Process(
            "gunicorn",
            [
                str(VENV_BIN / "gunicorn"),
                "budgeting_site.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.http_port}",
                "--workers",
                str(self.config.gunicorn_workers),
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                "--backlog",
                "2048",
                "--access-logfile",
                "-" if os.environ.get("SYSTEM_ACCESS_LOG") else "/dev/null",
            ],
            gunicorn_env,
            self.tmp / "gunicorn.log",
        )
        self.worker = Process(
            "worker",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "budgeting_site",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(self.config.celery_concurrency),
                "--hostname",
                f"sys-{self.db_name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env,
            self.tmp / "worker.log",
        )
        self.beat = Process(
            "beat",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "budgeting_site",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.beat_schedule),
                "--max-interval",
                "1",
            ],
            env,
            self.tmp / "beat.log",
        )
        self.gunicorn.start()
        if self.config.worker:
            self.start_worker()
        if self.config.beat:
            self.start_beat()
        self.wait_http()
        return self

    def manage(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            out, err = result.stdout[-3000:], result.stderr[-5000:]
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out}\n{err}")
        return result.stdout

    def python(self, code: str, timeout: float = 120) -> str:
        """Run Python with Django set up in the stack's environment (an operator's shell)."""
        prelude = "import django; django.setup()\n"
        result = subprocess.run(
            [sys.executable, "-c", prelude + code],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"stack python failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
            )
        return result.stdout

    def wait_http(self, timeout: float = 60) -> None:
        def answers() -> bool:
            assert self.gunicorn is not None
            if not self.gunicorn.running():
                raise RuntimeError(f"gunicorn exited:\n{self.gunicorn.log_since_start()[-4000:]}")
            try:
                r = httpx.get(f"{self.api}/health", timeout=2)
            except httpx.HTTPError:
                return False
            return r.status_code in (200, 503)

        wait_for(answers, timeout=timeout, interval=0.2, what="gunicorn health")

    def start_worker(self) -> None:
        assert self.worker is not None
        self.worker.start()
        self.worker.wait_log("ready.", timeout=60)

    def start_beat(self) -> None:
        assert self.beat is not None
        self.beat.start()
        self.beat.wait_log("beat: Starting", timeout=60)

    def stop(self) -> None:
        for proc in (self.beat, self.worker, self.gunicorn):
            if proc is not None:
                proc.stop()
        for proxy in (self.redis_proxy, self.broker_proxy, self.pg_proxy):
            if proxy is not None:
                proxy.close()
        self.redis.stop()
        if self._started:
            with contextlib.suppress(Exception), pg_admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        if not os.environ.get("SYSTEM_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers for tests ---------------------------------------------------------------
    def set_clock_offset(self, seconds: float) -> None:
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(repr(float(seconds)))
        os.replace(tmp, self.clock_file)
        # A new mtime tells every process to re-read the offset.
        now = time.time_ns()
        os.utime(self.clock_file, ns=(now, now))

    def token(
        self, tenant_id: str, roles: list[str], sub: str = "svc-system", ttl: int = 3600
    ) -> str:
        now = int(time.time())
        return jwt.encode(
            {"sub": sub, "tenant_id": tenant_id, "roles": roles, "iat": now, "exp": now + ttl},
            JWT_SECRET,
            algorithm="HS256",
        )

    def headers(self, tenant_id: str, roles: list[str], sub: str = "svc-system") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant_id, roles, sub)}"}

    def client(
        self, tenant_id: str | None = None, roles: list[str] | None = None, **kw: Any
    ) -> httpx.Client:
        headers = self.headers(tenant_id, roles or []) if tenant_id else {}
        return httpx.Client(base_url=self.api, headers=headers, timeout=kw.pop("timeout", 10), **kw)

    @contextlib.contextmanager
    def db(self) -> Iterator[psycopg.Connection]:
        """A direct (not proxied) connection to the stack's database, for assertions."""
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=self.db_name, autocommit=True
        ) as conn:
            yield conn

    def terminate_backends(self) -> int:
        """pg_terminate_backend on every connection of the stack (not ours: we are another
        application_name-less backend opened after, and excluded by pid)."""
        with pg_admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.db_name,),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def logs(self) -> str:
        parts = []
        for proc in (self.gunicorn, self.worker, self.beat):
            if proc is not None and proc.log.exists():
                parts.append(f"--- {proc.name} ---\n{proc.log.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)
