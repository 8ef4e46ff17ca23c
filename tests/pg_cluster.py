"""A private PostgreSQL cluster for tests that stop and restart the database server.

``initdb`` on a port of its own, its data and unix socket under ``/tmp``, listening on
127.0.0.1 only; as the ``postgres`` user when run as root (``initdb`` refuses root).
Never the shared server: these tests shut the server down.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's binaries directory, or None."""
    found = sorted(PG_ROOT.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def require_pg_bin() -> Path:
    """The binaries; skip the test without them, unless ``REQUIRE_POSTGRES=1`` (then fail)."""
    found = pg_bin()
    if found is None:
        message = f"PostgreSQL binaries (initdb, pg_ctl) not found under {PG_ROOT}"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{message} and REQUIRE_POSTGRES=1")
        pytest.skip(message)
    return found


class PgCluster:
    def __init__(self, port: int) -> None:
        self.bin = require_pg_bin()
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix=f"jq-pg-{port}-", dir="/tmp"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=self.dir,
        )

    def start(self, **settings: str) -> None:
        """Start the server; ``settings`` are extra ``-c name=value`` server settings."""
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += "".join(f" -c {name}={value}" for name, value in settings.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)
