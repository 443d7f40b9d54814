"""Real server processes for tests: uvicorn + Celery workers on Postgres and Redis, or `dev`.

Nothing is mocked: tests talk HTTP to these processes with the unmodified langgraph-sdk.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
GRAPHS_CONFIG = ROOT / "tests" / "graphs" / "langgraph.json"
POSTGRES_ADMIN_URL = os.environ.get("AGENTSERVER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("AGENTSERVER_TEST_REDIS", "redis://127.0.0.1:6379")


async def wait_for(predicate, timeout: float = 30, interval: float = 0.1) -> None:
    """Poll ``predicate`` (a check of a live server's state) until it holds, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError("condition not met in time")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REDIS_CLAIM_KEY = "agentserver-test:claimed-by"
REDIS_CLAIM_SECONDS = 6 * 3600


def claim_redis_db(owner: str) -> int:
    """A Redis database (3-15) nobody else holds: claimed with SET NX, so two sessions on one
    machine never share one (Celery queues and event streams would cross)."""
    import redis

    databases = list(range(3, 16))
    random.shuffle(databases)
    for db in databases:
        client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{db}")
        if client.set(REDIS_CLAIM_KEY, owner, nx=True, ex=REDIS_CLAIM_SECONDS):
            for key in client.scan_iter(count=1000):  # leftovers of a session that crashed
                if key != REDIS_CLAIM_KEY.encode():
                    client.delete(key)
            return db
    raise RuntimeError("every Redis database 3-15 is claimed by another test session")


def release_redis_db(db: int, owner: str) -> None:
    import redis

    client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{db}")
    if client.get(REDIS_CLAIM_KEY) == owner.encode():
        client.flushdb()


def create_database(name: str) -> str:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class LiveServer:
    """One deployment: a web process and, in production mode, Celery worker processes.

    ``mode`` is "prod" (uvicorn + Celery on Postgres + Redis) or "dev" (`manage.py dev`
    on SQLite, everything in one process).
    """

    mode: str = "prod"
    workers: int = 1
    # A Redis database of its own (see claim_redis_db), so concurrent sessions don't collide.
    redis_db: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    config: Path = GRAPHS_CONFIG
    # More options of `manage.py dev` (dev mode only).
    dev_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"agentserver-{self.mode}-"))
        self.db_name = f"agentserver_live_{uuid.uuid4().hex[:10]}"
        self.web: subprocess.Popen | None = None
        self.worker_procs: list[subprocess.Popen] = []
        self._log_files: list = []

    # ---------------------------------------------------------------- environment
    @property
    def redis_url(self) -> str:
        return f"{REDIS_BASE_URL}/{self.redis_db}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSERVER_", "DJANGO_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="agentserver.settings",
            AGENTSERVER_CONFIG=str(self.config),
            AGENTSERVER_TEST_LEDGER=str(self.tmp / "ledger.txt"),
            PYTHONUNBUFFERED="1",
        )
        if self.mode == "prod":
            env.update(DATABASE_URL=self.database_url, REDIS_URL=self.redis_url, CELERY_BROKER_URL=self.redis_url)
        else:
            env.update(DATABASE_URL=f"sqlite:///{self.tmp / 'dev.sqlite3'}")
            env.pop("REDIS_URL", None)
            env.pop("CELERY_BROKER_URL", None)
        env.update(self.extra_env)
        return env

    # ---------------------------------------------------------------- processes
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        self._log_files.append(log)
        return subprocess.Popen(
            args, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start(self) -> LiveServer:
        if self.mode == "prod":
            self.database_url = create_database(self.db_name)
            if self.redis_db is None:
                self.redis_db = claim_redis_db(self.db_name)
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
                cwd=ROOT, env=self.env(), check=True,
            )
            self.start_web()
            for _ in range(self.workers):
                self.start_worker()
            # The whole production setup: beat's recovery sweep re-sends a run whose message
            # was lost, as it would in a deployment.
            self.start_beat()
        else:
            self.web = self._spawn(
                "web",
                [sys.executable, "manage.py", "dev", "--port", str(self.port), "--log-level", "warning",
                 *self.dev_args],
            )
        self.wait_ready()
        return self

    def start_web(self) -> None:
        self.web = self._spawn("web", self._uvicorn(self.port))

    def _uvicorn(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "agentserver.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "--log-level", "warning",
        ]

    def start_extra_web(self) -> str:
        """Another web process on the same database and Redis; returns its base URL."""
        port = free_port()
        self.worker_procs.append(self._spawn(f"web-{port}", self._uvicorn(port)))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"extra web process not ready:\n{self.logs()}")

    def start_worker(self, concurrency: int = 8) -> subprocess.Popen:
        proc = self._spawn(
            f"worker{len(self.worker_procs)}",
            [
                sys.executable, "-m", "celery", "-A", "agentserver", "worker", "-P", "threads",
                "-c", str(concurrency), "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
                "-n", f"w{len(self.worker_procs)}-{uuid.uuid4().hex[:6]}@%h",
            ],
        )
        self.worker_procs.append(proc)
        return proc

    def start_beat(self) -> subprocess.Popen:
        proc = self._spawn(
            "beat",
            [
                sys.executable, "-m", "celery", "-A", "agentserver", "beat", "--loglevel", "WARNING",
                "-S", "django_celery_beat.schedulers:DatabaseScheduler",
                "--pidfile", str(self.tmp / "beat.pid"),
            ],
        )
        self.worker_procs.append(proc)
        return proc

    def restart(self) -> None:
        """Stop every process, then start web and the same number of workers again."""
        beat = any("beat" in " ".join(map(str, p.args)) for p in self.worker_procs)
        workers = sum(1 for p in self.worker_procs if "worker" in p.args and p.poll() is None)
        for proc in [*self.worker_procs, self.web]:
            if proc is not None:
                self.kill(proc)
        self.worker_procs = []
        self.start_web()
        for _ in range(workers):
            self.start_worker()
        if beat:
            self.start_beat()
        self.wait_ready()

    def flush_redis(self) -> None:
        """Lose every message and event of this deployment, as a Redis restart without
        persistence would: its own database only (FLUSHALL would also wipe the other
        servers' and their claims), which stays claimed."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        client.flushdb()
        client.set(REDIS_CLAIM_KEY, self.db_name, ex=REDIS_CLAIM_SECONDS)

    def ledger(self) -> list[str]:
        """Node executions recorded by the test graphs outside the graph state."""
        path = self.tmp / "ledger.txt"
        return path.read_text().split() if path.exists() else []

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.web and self.web.poll() is not None:
                raise RuntimeError(f"web process exited early:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        out = []
        for path in sorted(self.tmp.glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-5000:]}")
        return "\n".join(out)

    @staticmethod
    def kill(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop(self) -> None:
        try:
            for proc in [*self.worker_procs, self.web]:
                if proc is not None:
                    self.kill(proc)
            for log in self._log_files:
                log.close()
            if self.mode == "prod":
                drop_database(self.db_name)
                if self.redis_db is not None:
                    release_redis_db(self.redis_db, self.db_name)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)  # its logs, ledger and SQLite file
