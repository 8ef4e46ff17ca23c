"""Many workers through PgBouncer: W worker processes drain N jobs through a transaction pooler.

    python -m bench.pooler [--workers 100] [--jobs 100000] [--pool-size 20]

Starts a private PgBouncer (``/usr/sbin/pgbouncer``, ``pool_mode = transaction``,
``default_pool_size`` server connections) on ``BENCH_POOLER_PORT`` (default 6439) in
front of a fresh database on the benchmark server, starts ``--workers`` runworker
processes with their defaults (concurrency 1) on the pooler, waits until every one has
registered, then queues ``--jobs`` no-op jobs at once and times the drain. Idle workers
poll (``JOBS_LISTEN_DATABASE_URL=off``): a LISTEN connection per worker straight to the
server would be a hundred more server connections, which is what the pooler is for.
Every half second it samples the server's connections to the database (all, active,
waiting on a lock) and the machine's CPU use. Checks that every job ran exactly once
(done, one attempt, no attempt history). Prints one JSON line and writes
docs/pooler.md (``--output``). ``--direct`` runs the
same without the pooler, for comparison.
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PG_ADMIN_URL,
    ROOT,
    database_url,
    drop_database,
    emit,
    start_workers,
    stop_workers,
    wait_for,
)
from bench.django_env import setup

PGBOUNCER = Path("/usr/sbin/pgbouncer")
PORT = int(os.environ.get("BENCH_POOLER_PORT", "6439"))


def start_pgbouncer(url: str, pool_size: int, workdir: Path) -> subprocess.Popen:
    """PgBouncer in transaction mode on ``PORT`` in front of the database at ``url``."""
    name = url.rsplit("/", 1)[1]
    server = url.split("@", 1)[1].rsplit("/", 1)[0]
    host, port = server.split(":") if ":" in server else (server, "5432")
    ini, users = workdir / "pgbouncer.ini", workdir / "users.txt"
    users.write_text('"postgres" ""\n')
    ini.write_text(
        f"[databases]\n{name} = host={host} port={port} dbname={name} user=postgres\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {PORT}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\npool_mode = transaction\n"
        f"default_pool_size = {pool_size}\nmax_client_conn = 2000\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        as_postgres = ["runuser", "-u", "postgres", "--"]
        for path in (workdir, ini, users):
            shutil.chown(path, "postgres")
    return subprocess.Popen(
        [*as_postgres, str(PGBOUNCER), str(ini)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class Sampler(threading.Thread):
    """Every half second: the server's connections to the database and the CPU in use."""

    def __init__(self, database: str) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            busy, total = _cpu()
            while not self.stop.wait(0.5):
                row = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE state = 'active'), "
                    "count(*) FILTER (WHERE wait_event_type = 'Lock') "
                    "FROM pg_stat_activity WHERE datname = %s",
                    [self.database],
                ).fetchone()
                now_busy, now_total = _cpu()
                cpu = (now_busy - busy) / max(1, now_total - total)
                busy, total = now_busy, now_total
                self.samples.append(
                    {"connections": row[0], "active": row[1], "lock_waits": row[2], "cpu": cpu}
                )


def _answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def _cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def run(workers: int, jobs: int, pool_size: int, direct: bool = False) -> dict[str, Any]:
    url = database_url("postgres", "pooler")
    through = url if direct else f"postgres://postgres@127.0.0.1:{PORT}/{url.rsplit('/', 1)[1]}"
    setup(url)
    from django.db import connection

    from bench.outcome import enqueue_noops
    from jobs.models import Job, JobAttempt, Worker

    with tempfile.TemporaryDirectory(prefix="bench-pooler-") as workdir:
        bouncer = start_pgbouncer(url, pool_size, Path(workdir))
        procs: list[subprocess.Popen] = []
        try:
            wait_for(lambda: _answers(through), timeout=30)
            booted = time.perf_counter()
            procs = start_workers(
                workers, through, JOBS_LISTEN_DATABASE_URL="off", JOBS_LOG_LEVEL="WARNING"
            )
            wait_for(lambda: Worker.objects.count() >= workers, timeout=900)
            boot_s = time.perf_counter() - booted
            sampler = Sampler(url.rsplit("/", 1)[1])
            sampler.start()
            started = time.perf_counter()
            enqueue_noops(jobs)
            wait_for(
                lambda: not Job.objects.exclude(status="done").exists(), timeout=3600, interval=0.2
            )
            elapsed = time.perf_counter() - started
            sampler.stop.set()
            sampler.join()
        finally:
            stop_workers(procs, timeout=60)
            bouncer.terminate()
            bouncer.wait(timeout=30)
    once = (
        Job.objects.filter(status="done", attempts=1).count() == jobs
        and not JobAttempt.objects.exists()
    )
    samples = sampler.samples
    connection.close()
    drop_database(url)
    return emit(
        {
            "bench": "pooler",
            "workers": workers,
            "concurrency": 1,
            "pool_size": None if direct else pool_size,
            "jobs": jobs,
            "boot_s": round(boot_s, 1),
            "drain_s": round(elapsed, 2),
            "jobs_per_s": round(jobs / elapsed),
            "exactly_once": once,
            "samples": len(samples),
            "server_connections_max": max((s["connections"] for s in samples), default=None),
            "active_median": _median([s["active"] for s in samples]),
            "lock_waits_max": max((s["lock_waits"] for s in samples), default=None),
            "cpu_median": _median([round(s["cpu"], 2) for s in samples]),
            "exit_codes": sorted({p.returncode for p in procs}),
        }
    )


def rows(result: dict[str, Any]) -> list[list[Any]]:
    """The run as table rows (this report's and ``make bench``'s)."""
    return [
        ["workers (concurrency 1 each)", result["workers"]],
        ["jobs", f"{result['jobs']:,}"],
        ["every worker registered after (s)", result["boot_s"]],
        ["drain (s)", result["drain_s"]],
        ["jobs/s", f"{result['jobs_per_s']:,}"],
        ["every job done once, attempt 1, no history", "yes" if result["exactly_once"] else "NO"],
        ["server connections to the database, most seen", result["server_connections_max"]],
        ["of them active, median", result["active_median"]],
        ["waiting on a lock, most seen", result["lock_waits_max"]],
        ["CPU busy, median (1.0 = both cores)", result["cpu_median"]],
        ["worker exit codes", ", ".join(map(str, result["exit_codes"]))],
    ]


def how(result: dict[str, Any]) -> str:
    if result["pool_size"] is None:
        return "straight to PostgreSQL (no pooler)"
    return f"through PgBouncer, transaction mode, {result['pool_size']} server connections"


def section(result: dict[str, Any], level: str = "##") -> str:
    return (
        f"{level} {result['workers']} workers drain {result['jobs']:,} no-op jobs, {how(result)}"
        "\n\nWorkers started first (their registration timed), then the jobs queued at once; "
        f"sampled every half second ({result['samples']} samples).\n\n"
    )


def markdown(result: dict[str, Any], machine: dict[str, Any], seconds: float) -> str:
    from bench import report

    return report.standalone(
        "Many workers through PgBouncer",
        machine,
        seconds,
        f"PostgreSQL, {how(result)}",
        section(result) + report.table("|", rows(result)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument("--direct", action="store_true", help="no pooler: for comparison")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "pooler.md")
    args = parser.parse_args()
    from bench import report

    machine = report.machine()
    started = time.monotonic()
    result = run(args.workers, args.jobs, args.pool_size, args.direct)
    report.write(args.output, markdown(result, machine, time.monotonic() - started))


if __name__ == "__main__":
    main()
