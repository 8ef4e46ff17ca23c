"""Helpers shared by the benchmarks: fresh databases, worker processes, outcome checks.

Every measurement runs in a process of its own (``python -m bench.<module> ...``),
pointed at a fresh, migrated database. Databases are cheap to make: the first
one of a kind is migrated once into a template (a PostgreSQL template database,
an SQLite file) and every later one is a copy of it.

Environment: ``BENCH_PG_URL`` (an admin connection, default the local
``postgres`` database), ``BENCH_DB_PREFIX`` (names of the PostgreSQL databases,
default ``bench_``), ``BENCH_SQLITE_DIR`` (where the SQLite files go, default
the temp directory), ``BENCH_MYSQL_URL`` (MariaDB/MySQL: the server, default
``mysql://root@127.0.0.1:3306/``; databases are named ``BENCH_MYSQL_PREFIX``, default
``bench_``, plus the measurement's name). MariaDB has no template databases: each
MariaDB database is migrated afresh.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PREFIX = os.environ.get("BENCH_DB_PREFIX", "bench_")
SQLITE_DIR = Path(os.environ.get("BENCH_SQLITE_DIR", tempfile.gettempdir()))
MYSQL_URL = os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/").rstrip("/")
MYSQL_PREFIX = os.environ.get("BENCH_MYSQL_PREFIX", "bench_")
DATABASES = ["sqlite", "postgres", "mysql"]


def emit(record: dict[str, Any]) -> dict[str, Any]:
    """Print one JSON line and return the record."""
    print(json.dumps(record), flush=True)
    return record


def _sqlite_path(name: str) -> Path:
    return SQLITE_DIR / f"{PREFIX}{name}.sqlite3"


def _drop_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PREFIX}{name}"


def _template(kind: str) -> str:
    """Return the URL of a migrated template database, migrating it on first use."""
    if kind == "sqlite":
        path = _sqlite_path("template")
        if not path.exists():
            SQLITE_DIR.mkdir(parents=True, exist_ok=True)
            manage("migrate", "--noinput", "-v0", url=f"sqlite:///{path}").check_returncode()
        return f"sqlite:///{path}"
    import psycopg

    name = f"{PREFIX}template"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return _pg_url("template")
        conn.execute(f'CREATE DATABASE "{name}"')
    manage("migrate", "--noinput", "-v0", url=_pg_url("template")).check_returncode()
    return _pg_url("template")


def drop_templates() -> None:
    """Forget the templates, so the next database is migrated afresh (after code changes)."""
    import psycopg

    _drop_sqlite(_sqlite_path("template"))
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PREFIX}template" WITH (FORCE)')


def _mysql(sql: str) -> None:
    """Run one statement on the MariaDB/MySQL server (no database chosen)."""
    from urllib.parse import urlsplit

    import MySQLdb

    where = urlsplit(MYSQL_URL)
    conn = MySQLdb.connect(
        host=where.hostname or "127.0.0.1",
        port=where.port or 3306,
        user=where.username or "root",
        password=where.password or "",
    )
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


def database_url(kind: str, name: str) -> str:
    """Create an empty, migrated database of ``kind`` (one of ``DATABASES``); return its URL."""
    if kind == "mysql":
        _mysql(f"DROP DATABASE IF EXISTS `{MYSQL_PREFIX}{name}`")
        _mysql(f"CREATE DATABASE `{MYSQL_PREFIX}{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        url = f"{MYSQL_URL}/{MYSQL_PREFIX}{name}"
        manage("migrate", "--noinput", "-v0", url=url).check_returncode()
        return url
    template = _template(kind)
    if kind == "sqlite":
        path = _sqlite_path(name)
        _drop_sqlite(path)
        shutil.copyfile(template.removeprefix("sqlite:///"), path)
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PREFIX}{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{PREFIX}{name}" TEMPLATE "{PREFIX}template"')
    return _pg_url(name)


def drop_database(url: str) -> None:
    """Remove a benchmark database made by ``database_url``."""
    if url.startswith("sqlite:///"):
        _drop_sqlite(Path(url.removeprefix("sqlite:///")))
        return
    if url.startswith("mysql://"):
        _mysql(f"DROP DATABASE IF EXISTS `{url.rsplit('/', 1)[1]}`")
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_postgres(url: str | None, name: str) -> Iterator[str]:
    """Yield ``url``, or without one a fresh PostgreSQL database, dropped afterwards."""
    if url:
        yield url
        return
    url = database_url("postgres", name)
    try:
        yield url
    finally:
        from django.conf import settings
        from django.db import connections

        if settings.configured:
            connections.close_all()
        drop_database(url)


def env_for(url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "JOBS_LOG_LEVEL": "WARNING",
        "JOBS_PURGE_CRON": "off",
        "DJANGO_SETTINGS_MODULE": "jobqueue.settings",
        **extra,
    }


def manage(*args: str, url: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env_for(url, **extra), check=False
    )


def start_workers(
    n: int, url: str, *args: str, log: Path | None = None, **extra: str
) -> list[subprocess.Popen]:
    """Start ``n`` runworker processes; with ``log``, their output is appended to that file
    (as a service's goes to a file or the journal)."""
    out = open(log, "a") if log else None  # the children write to it
    try:
        return [
            subprocess.Popen(
                [sys.executable, "manage.py", "runworker", *args],
                cwd=ROOT,
                env=env_for(url, **extra),
                stdout=out,
                stderr=out,
            )
            for _ in range(n)
        ]
    finally:
        if out:
            out.close()


def wait_all(procs: list[subprocess.Popen], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.wait(timeout=max(1, deadline - time.monotonic()))
        if proc.returncode != 0:
            raise SystemExit(f"worker exited with {proc.returncode}")


def stop_workers(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout} s waiting for {check.__name__}")


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (0 < fraction <= 1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))]


def load_bare(cursor: Any, sql: str, params: Any) -> None:
    """Run ``sql`` (a large ``INSERT ... SELECT`` into the job table, PostgreSQL) with the
    table's indexes dropped, then build them again, each by one sort. Millions of rows load
    several times faster: a row at a time, each index takes a random page write per row.
    One transaction: a load that fails leaves the table and its indexes as they were. Its
    foreign keys are checked as each statement ends, not at commit: deferred checks still
    pending on the table would refuse the ``CREATE INDEX``."""
    from django.db import transaction

    with transaction.atomic():
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        _load_bare(cursor, sql, params)


def _load_bare(cursor: Any, sql: str, params: Any) -> None:
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs_job' "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
    )
    indexes = cursor.fetchall()
    for name, _ in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    cursor.execute(sql, params)
    cursor.execute("SET maintenance_work_mem = '1GB'")
    for _, definition in indexes:
        cursor.execute(definition)


@contextmanager
def private_postgres(port: int, **settings: str) -> Iterator[Any]:
    """Start a private PostgreSQL cluster on ``port`` (``initdb`` under /tmp, the server's
    stock settings: autovacuum on, fsync on; ``settings`` add ``-c name=value``) and yield
    it (``url(database)``, ``create_database(name)``, ``log``: its server log); remove it
    afterwards. For what a shared server may have turned off (autovacuum) or whose log it
    keeps to itself."""
    from tests.pg_cluster import PgCluster

    cluster = PgCluster(port)
    try:
        cluster.start(fsync="on", **settings)
        yield cluster
    finally:
        cluster.destroy()
