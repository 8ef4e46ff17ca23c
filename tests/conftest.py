import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JOBS_TASK_MODULES", "tests.tasks")

# Prometheus multiprocess mode, as deployed: this process and the workers it
# starts share one directory. Set before prometheus_client is first imported
# (jobs.observability.metrics imports it lazily).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="jobqueue-test-metrics-")
    atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _test_settings(settings: Any) -> None:
    """Register the test tasks; serve static files without a collected manifest."""
    from django.core.cache import cache

    import tests.tasks  # noqa: F401

    # Throttle counters live in the cache; each test starts with none.
    cache.clear()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _processes_are_slow(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts a program (``subprocess``) must be marked ``slow``, so that
    ``-m "not slow"`` really runs in-process only."""
    if request.node.get_closest_marker("slow"):
        return

    def refuse(self: subprocess.Popen, args: Any, *rest: Any, **options: Any) -> None:
        raise AssertionError(f"{request.node.nodeid} starts {args!r}: mark it slow")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture
def make_job(db: None) -> Callable[..., Any]:
    """Create a queued job through the lifecycle; overrides are enqueue()'s arguments."""
    from jobs import lifecycle

    def make(**overrides: Any) -> Any:
        overrides.setdefault("task", "echo")
        job, _ = lifecycle.enqueue(**overrides)
        return job

    return make


@pytest.fixture
def user(db: None) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("root", password="pw-for-tests-only")


@pytest.fixture
def api(user: Any) -> Any:
    """An API client authenticated with a DRF token."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    """Create a user holding exactly the given job permissions ("view", "add", ...)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    def make(*verbs: str, staff: bool = False, name: str | None = None) -> Any:
        user = get_user_model().objects.create_user(
            name or f"user-{'-'.join(verbs) or 'none'}", password="pw-for-tests-only"
        )
        user.is_staff = staff
        user.save()
        codenames = [f"{verb}_job" for verb in verbs]
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        return user

    return make


@pytest.fixture
def client_for() -> Callable[[Any], Any]:
    """An API client authenticated with a fresh DRF token of ``user``."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(user: Any) -> Any:
        client = APIClient()
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def anon(db: None) -> Any:
    from rest_framework.test import APIClient

    return APIClient()


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repository root, with exactly ``env``."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def database_url() -> str:
    """The URL of the database the tests run on, for worker subprocesses."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "mysql":
        return f"mysql://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 3306}/{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def wait_for(condition: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


class Processes:
    """Start ``manage.py`` subprocesses against the test database; kill leftovers.

    Each process writes its output to a file (a pipe nobody reads would fill up
    and block it); ``output(proc)`` reads it.
    """

    def __init__(self, log_dir: Path) -> None:
        self.started: list[subprocess.Popen] = []
        self.log_dir = log_dir

    def manage(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "JOBS_TASK_MODULES": "tests.tasks",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        log = self.log_dir / f"process-{len(self.started)}.log"
        with open(log, "w") as handle:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=full_env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, with its executors
            )
        proc.log = log  # type: ignore[attr-defined]
        self.started.append(proc)
        return proc

    @staticmethod
    def output(proc: subprocess.Popen) -> str:
        return proc.log.read_text()  # type: ignore[attr-defined]

    def worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return self.manage("runworker", "--poll-interval", "0.05", *args, env=env)

    def stop_all(self) -> None:
        for proc in self.started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # with its executors and web workers
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.fixture
def processes(transactional_db: None, tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@contextlib.contextmanager
def row_locked_elsewhere(job_id: Any) -> Iterator[None]:
    """Hold a row lock on the job from a second, real connection (as a claim in flight
    does), with this connection's lock waits capped at 2 s so a wait fails fast."""
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("row locks with SKIP LOCKED are PostgreSQL's and MySQL's; SQLite serialises")
    with other_connection() as other, connection.cursor() as cursor:
        other.cursor().execute("SELECT id FROM jobs_job WHERE id = %s FOR UPDATE", [job_id])
        if connection.vendor == "mysql":
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 2")
        else:
            cursor.execute("SET lock_timeout = '2s'")  # a wait would fail, not hang
        try:
            yield
        finally:
            if connection.vendor == "mysql":
                cursor.execute("SET SESSION innodb_lock_wait_timeout = DEFAULT")
            else:
                cursor.execute("RESET lock_timeout")


@contextlib.contextmanager
def other_connection() -> Iterator[Any]:
    """A second driver connection to the test database, in a transaction, rolled back."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "mysql":
        import MySQLdb

        other = MySQLdb.connect(
            database=s["NAME"],
            user=s["USER"],
            host=s["HOST"] or "127.0.0.1",
            port=int(s["PORT"] or 3306),
            password=s["PASSWORD"] or "",
        )
        other.cursor().execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        other.autocommit(False)
    else:
        import psycopg

        other = psycopg.connect(
            dbname=s["NAME"], user=s["USER"], host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432
        )
    try:
        yield other
    finally:
        other.rollback()
        other.close()
