"""Shared fixtures: users of each role, logged-in clients, a real Celery worker subprocess.

The suite runs on whatever ``DATABASE_URL``/``CELERY_BROKER_URL`` say (SQLite and the filesystem
broker locally, PostgreSQL and Redis in CI). Tests that need the worker are marked ``worker`` and
must use ``transactional_db`` so the worker process sees their rows.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Fixtures of each area live in tests/plugins/<area>.py and are registered here.
pytest_plugins = [f"tests.plugins.{p.stem}" for p in sorted((REPO / "tests" / "plugins").glob("[a-z]*.py"))]


@pytest.fixture(scope="session")
def realct() -> dict[str, Path]:
    """Paths of the cached real-CT fixtures (scripts/fetch_fixtures.py; `make test` fetches them)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import fetch_fixtures

    fetch_fixtures.main()
    return fetch_fixtures.paths()


@pytest.fixture
def make_user(db, django_user_model):
    from adrenal_site.roles import ensure_groups
    from django.contrib.auth.models import Group

    def make(username: str, role: str | None):
        ensure_groups()
        user = django_user_model.objects.create_user(username=username, password="pw-" + username)
        if role:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def users(make_user):
    return {
        "clinician": make_user("clin", "clinician"),
        "lead": make_user("lead", "lead"),
        "admin": make_user("adm", "admin"),
        "none": make_user("norole", None),
    }


@pytest.fixture
def client_as(client, users):
    """``client_as("lead")`` returns the test client logged in as that role's user."""

    def login(role: str):
        client.force_login(users[role])
        return client

    return login


def database_url_for_subprocess() -> str:
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s.get("USER") or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{auth + '@' if auth else ''}{host}:{port}/{s['NAME']}"


class Worker:
    """A real ``celery worker`` subprocess consuming both queues, on the test database."""

    def __init__(self, concurrency: int = 2, name: str = "testworker"):
        self.concurrency = concurrency
        self.name = name
        self.proc: subprocess.Popen | None = None
        from django.conf import settings

        self.log = settings.DATA_DIR / f"{name}.log"

    def start(self) -> Worker:
        env = dict(os.environ, DATABASE_URL=database_url_for_subprocess(), PYTHONUNBUFFERED="1")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "adrenal_site", "worker", "-Q", "cpu,gpu", "-P", "prefork",
             "-c", str(self.concurrency), "-n", f"{self.name}@%h", "--without-heartbeat", "--without-gossip",
             "--without-mingle", "-l", "INFO"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log.read_text()[-3000:]}")
            if b" ready." in self.log.read_bytes():
                return
            time.sleep(0.3)
        raise TimeoutError(f"celery worker not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker process group, as a crashed node would die."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def purge_broker() -> None:
    from adrenal_site.celery import app

    with app.connection_for_write() as conn:
        for queue in ("cpu", "gpu"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - an undeclared queue has nothing to purge
                pass


@pytest.fixture
def celery_worker_proc(transactional_db, request):
    """A fresh worker for one test (log in DATA_DIR/testworker.log). Marked tests only."""
    worker = Worker()
    worker.log.unlink(missing_ok=True)
    purge_broker()
    worker.start()
    yield worker
    worker.stop()


def wait_for(predicate, timeout: float = 60, interval: float = 0.25, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
