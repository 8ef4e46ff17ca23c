"""Helpers shared by the benchmarks: fresh databases, worker processes, outcome checks."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def emit(record: dict[str, Any]) -> dict[str, Any]:
    """Print one JSON line and return the record."""
    print(json.dumps(record), flush=True)
    return record


def database_url(kind: str, name: str) -> str:
    """Create an empty, migrated database of ``kind`` ('sqlite' or 'postgres'); return its URL."""
    if kind == "sqlite":
        path = Path(tempfile.gettempdir()) / f"jobqueue-bench-{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "bench_{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "bench_{name}"')
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/bench_{name}"
    manage("migrate", "--noinput", "-v0", url=url).check_returncode()
    return url


def env_for(url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "JOBS_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "jobqueue.settings",
        **extra,
    }


def manage(*args: str, url: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env_for(url, **extra), check=False
    )


def start_workers(n: int, url: str, *args: str, **extra: str) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "manage.py", "runworker", *args],
            cwd=ROOT,
            env=env_for(url, **extra),
        )
        for _ in range(n)
    ]


def wait_all(procs: list[subprocess.Popen], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.wait(timeout=max(1, deadline - time.monotonic()))
