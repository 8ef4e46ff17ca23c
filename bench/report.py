"""The machine description and the markdown reports (docs/benchmarks.md and the
single-benchmark reports: docs/admin-scale.md, docs/purge.md, docs/stats.md)."""

import os
import platform
import shlex
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import PG_ADMIN_URL, ROOT
from bench.targets import targets

Records = list[dict[str, Any]]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _pg_version() -> str:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:  # a description, not a check
        return f"unavailable ({exc.__class__.__name__})"


def _mysql_version() -> str:
    """The MariaDB/MySQL server's version and buffer pool size at ``BENCH_MYSQL_URL``;
    empty if unreachable."""
    from urllib.parse import urlsplit

    try:
        import MySQLdb

        where = urlsplit(os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/"))
        conn = MySQLdb.connect(
            host=where.hostname or "127.0.0.1",
            port=where.port or 3306,
            user=where.username or "root",
            password=where.password or "",
            connect_timeout=3,
        )
    except Exception:  # no driver, no server: the report says nothing of MariaDB
        return ""
    try:
        cursor = conn.cursor()
        # The buffer pool decides whether a million jobs' indexes stay in memory.
        cursor.execute("SELECT VERSION(), @@innodb_buffer_pool_size DIV 1048576")
        version, pool_mb = cursor.fetchone()
        return f"{version} (`innodb_buffer_pool_size` {pool_mb}M)"
    finally:
        conn.close()


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def _git_commit() -> str:
    """The short commit, marked when the code a run measures (the app, the project, the
    benchmarks, the pins) differs from it; the README, tests and docs/ do not count."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    code = ["jobs", "jobqueue", "bench", "manage.py", "requirements.txt"]
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", *code)
    return f"{commit}, with uncommitted changes" if dirty else commit


def command() -> str:
    """This process's command line as typed: ``python -m bench.x ...`` or ``python path ...``."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None:
        name = spec.name.removesuffix(".__main__")  # python -m bench, not bench.__main__
        return shlex.join(["python", "-m", name, *sys.argv[1:]])
    return shlex.join(["python", *sys.argv])


def machine() -> dict[str, Any]:
    """Describe the machine and software: the figures mean little without it."""
    import django

    return {
        "bench": "machine",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "memory_gb": _mem_total_gb(),
        "cpu": _cpu_model(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "postgresql": _pg_version(),
        "sqlite": sqlite3.sqlite_version,
        "mariadb": _mysql_version(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "commit": _git_commit(),
        "command": command(),
    }


def _find(records: Records, **match: Any) -> dict[str, Any] | None:
    for record in records:
        if all(record.get(key) == value for key, value in match.items()):
            return record
    return None


def _of(records: Records, bench: str) -> Records:
    return [r for r in records if r["bench"] == bench]


def table(header: str, rows: list[list[Any]]) -> str:
    """A markdown table; ``header`` is the header row's cells separated by ``|``."""
    cells = [cell.strip() for cell in header.split("|")]
    lines = ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _n(value: float) -> str:
    return f"{value:,}"


def _drain(records: Records) -> str:
    rows = [
        [
            r["db"],
            f"{r['workers']} x `--concurrency {r['concurrency']}`",
            "default (none given)" if r["batch"] == "default" else f"`--batch {r['batch']}`",
            r.get("log_level", "WARNING"),
            _n(r["jobs"]),
            _n(r["wall_jobs_per_s"]),
            _n(r["drain_jobs_per_s"]),
            r["wall_s"],
            r["drain_s"],
            ", ".join(_n(v) for v in r.get("all_drain_jobs_per_s", [])),
        ]
        for r in _of(records, "drain")
    ]
    return (
        "## Drain throughput (pre-enqueued noop jobs, `runworker --once`)\n\n"
        "Rows without `--batch` run `runworker`'s defaults, as a user gets them: claims of "
        "up to 100 jobs per executor, sized by how fast the last batches ran, and logs at "
        "INFO (a line per claim and per outcome, written to a file). The `--batch 100` row "
        "is the tuned setting the earlier reports measured: `JOBS_LOG_LEVEL=WARNING`. "
        "Wall clock: worker start to last exit (process start-up included, a fixed ~1 s). "
        "Drain: first `started_at` to last `finished_at` in the database. Each row is the "
        "median of its rounds (every round's drain rate in the last column).\n\n"
        + table(
            "db | processes x concurrency | batch | log level | jobs | wall jobs/s | drain jobs/s "
            "| wall s | drain s | all rounds, drain jobs/s",
            rows,
        )
    )


def _best_ratio(records: Records, host: dict[str, Any]) -> str:
    """Best host round over best repo round: steadier than medians on a busy machine."""
    repo = _find(records, bench="host", db=host["db"], batch=host["batch"], settings="repo")
    if host["settings"] != "host" or repo is None:
        return ""
    return str(round(max(host["all_drain_jobs_per_s"]) / max(repo["all_drain_jobs_per_s"]), 3))


def _host(records: Records) -> str:
    rows = [
        [
            r["db"],
            "host (Django's defaults, `CONN_MAX_AGE = 0`)"
            if r["settings"] == "host"
            else "this repository's",
            "default" if r["batch"] == "default" else f"`--batch {r['batch']}`",
            _n(r["jobs"]),
            _n(r["drain_jobs_per_s"]),
            r.get("ratio_to_repo", ""),
            _best_ratio(records, r),
            ", ".join(_n(v) for v in r["all_drain_jobs_per_s"]),
        ]
        for r in _of(records, "host")
    ]
    return (
        "## Drain under a host project's settings (`bench.host`, one `runworker --once`)\n\n"
        "A project that installs jobqueue keeps Django's defaults (`bench/host_settings.py`: "
        "`CONN_MAX_AGE = 0`, SQLite without WAL, busy timeout or IMMEDIATE, no LOGGING but "
        "the `jobs` logger at WARNING as in every run here); the same noop jobs drained under "
        "this repository's settings, rounds alternating on one database. Median round, "
        "database clock; the ratios compare the medians and the best rounds.\n\n"
        + table(
            "db | settings | batch | jobs | drain jobs/s | host / repo (median) "
            "| host / repo (best) | all rounds, drain jobs/s",
            rows,
        )
    )


def _latency(records: Records) -> str:
    rows = [
        [
            r["db"],
            r["samples"],
            f"{r['poll_interval_s']} s",
            r["median_ms"],
            r["p95_ms"],
            r["min_ms"],
            r["max_ms"],
        ]
        for r in _of(records, "latency")
    ]
    return (
        "## Pickup latency (idle worker, one job at a time, enqueue → finished_at)\n\n"
        "The worker runs with its default poll interval (`JOBS_POLL_INTERVAL`).\n\n"
        + table("db | samples | poll interval | median ms | p95 ms | min ms | max ms", rows)
    )


def _mixed(records: Records) -> str:
    labels = {
        "default": "default (none given)",
        "no-hand-back": "batches, no hand-back (`JOBS_HAND_BACK_AFTER=3600`)",
        "batch-1": "`--batch 1`",
    }
    rows = [
        [
            r["db"],
            labels.get(r["variant"], r["variant"]),
            f"{r['arrival_jobs']} ({r['arrival_long_jobs']} long)",
            r["short_wait_median_ms"],
            r["short_wait_p99_ms"],
            r["long_wait_p99_ms"],
            f"{r['backlog_jobs']} ({r['backlog_long_jobs']} long)",
            _n(r["backlog_jobs_per_s"]),
            r["backlog_s"],
            r["backlog_floor_s"],
        ]
        for r in _of(records, "mixed")
    ]
    return (
        "## Mixed workload (`bench.mixed`: 90% noop, 10% jobs of 200 ms, 2 `runworker`)\n\n"
        "Arrivals: jobs enqueued one at a time at 60 a second for 5 s (about 60% of what "
        "the two executors can run); a short job's wait is `started_at - created_at`. "
        "Backlog: the same mix queued at once and drained (database clock); the floor is "
        "the long jobs' own time spread over the two workers.\n\n"
        + table(
            "db | worker options | arrivals | short wait median ms | short wait p99 ms "
            "| long wait p99 ms | backlog | backlog jobs/s | backlog s | floor s",
            rows,
        )
    )


def _enqueue(records: Records) -> str:
    rows = [
        [
            r["db"],
            r["mode"],
            _n(r["jobs"]),
            _n(r["requests"]),
            r["seconds"],
            _n(r["jobs_per_s"]),
            _n(r["requests_per_s"]),
            r.get("server_closed_connections", ""),
        ]
        for r in _of(records, "enqueue")
    ]
    return (
        "## Enqueue\n\n"
        "HTTP: gunicorn `-w 2` with `jobqueue/gunicorn.py` (threaded workers, 4 threads), "
        "DJANGO_DEBUG off, write throttle off "
        "(`JOBS_WRITE_RATE=none`), token auth of a user with the `add_job` permission, "
        "4 client threads "
        "with one keep-alive `http.client` connection each (the last column counts responses "
        "after which the server closed the connection); bulk = JSON arrays of 1,000 jobs.\n\n"
        + table(
            "db | mode | jobs | requests | seconds | jobs/s | requests/s | server closed conn.",
            rows,
        )
    )


def _scale(records: Records) -> str:
    rows = [
        [
            r["db"],
            _n(r["finished_rows"]),
            r["load_s"],
            _n(r["empty_drain_jobs_per_s"]),
            _n(r["full_drain_jobs_per_s"]),
            r["ratio"],
        ]
        for r in _of(records, "scale")
    ]
    return (
        "## Claim scale (one worker, runworker's defaults, 5,000 noop jobs)\n\n"
        "Best drain of three on each of two databases, one empty and one with the finished "
        "rows, drains alternating between them so the machine's load hits both alike.\n\n"
    ) + table(
        "db | finished rows | load s | empty table jobs/s | with finished rows jobs/s | ratio", rows
    )


def _memory(records: Records) -> str:
    rows: list[list[Any]] = []
    notes = []
    for r in _of(records, "memory"):
        for key, snap in r.items():
            if key.startswith("after_"):
                count = _n(int(key.removeprefix("after_")))
                rows.append(
                    [r["db"], count, snap["worker_mb"], snap["total_mb"], snap["processes"]]
                )
        rows.append([r["db"], "growth", r["worker_growth_mb"], r["total_growth_mb"], ""])
        if "runs" in r:
            notes.append(
                f"{r['db']}: {_n(r['runs'])} task runs logged; "
                f"{r['jobs_run_more_than_once']} jobs ran more than once.\n"
            )
    return (
        "## Worker memory (one worker, its defaults, `bench.mark` jobs: a noop that logs "
        "each run)\n\n"
        + table("db | after jobs | worker RSS MB | worker + children RSS MB | processes", rows)
        + "\n"
        + "".join(notes)
    )


POOLER_START, POOLER_END = "<!-- section: pooler -->", "<!-- /section: pooler -->"


def _pooler(records: Records, stamp: str = "") -> str:
    from bench import pooler

    body = "".join(
        pooler.section(r) + stamp + table("|", pooler.rows(r)) for r in _of(records, "pooler")
    )
    return f"{POOLER_START}\n{body}{POOLER_END}\n" if body else ""


def update_pooler(path: Path, machine: dict[str, Any], records: Records, seconds: float) -> None:
    """Put a run of the pooler group alone into the report at ``path``, in place of its
    earlier section (or before the peers), saying when, at which commit and load it ran."""
    load = " / ".join(map(str, machine["loadavg_at_start"]))
    stamp = (
        f"Run on its own by `{command()}` on {machine['date']} at commit "
        f"`{machine['commit']}` ({seconds:.0f} s; load average at start {load}).\n\n"
    )
    section = _pooler(records, stamp)
    text = path.read_text()
    if POOLER_START in text:
        head, rest = text.split(POOLER_START, 1)
        text = head + section.rstrip("\n") + rest.split(POOLER_END, 1)[1]
    else:
        head, peers = text.split("## Peers", 1)
        text = head + section + "\n## Peers" + peers
    write(path, text)


def _machine(machine: dict[str, Any]) -> str:
    load = " / ".join(map(str, machine["loadavg_at_start"]))
    rows = [
        ["CPUs (`nproc`)", machine["nproc"]],
        ["CPU", machine["cpu"]],
        ["memory", f"{machine['memory_gb']} GB"],
        ["load average at start (1/5/15 min)", load],
        ["PostgreSQL", machine["postgresql"]],
        ["SQLite", machine["sqlite"]],
        *([["MariaDB/MySQL", machine["mariadb"]]] if machine.get("mariadb") else []),
        ["Python / Django", f"{machine['python']} / {machine['django']}"],
    ]
    return (
        "## Machine\n\n" + table("|", rows) + "\nThe machine is shared with other work: a "
        "load average above the CPU count means the benchmark had less than the whole "
        "machine, and figures move by ±30% between runs.\n"
    )


def standalone(
    title: str, machine: dict[str, Any], seconds: float, database: str, *sections: str
) -> str:
    """A one-benchmark report: who wrote it and when, the machine, the database, the tables."""
    return "\n".join(
        [
            f"# {title}\n\n"
            f"Written by `{machine['command']}` on {machine['date']} at commit "
            f"`{machine['commit']}`; the run took {seconds:.0f} s. Database: {database}.\n",
            _machine(machine),
            *sections,
        ]
    )


def write(path: Path, text: str) -> None:
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)


def markdown(machine: dict[str, Any], records: Records, seconds: float) -> str:
    """The whole report: machine, targets, every table, peers, profile notes."""
    errors = [r["step"] for r in records if r["bench"] == "error"]
    parts = [
        "# Benchmarks\n\n"
        f"Written by `make bench` (`python -m bench`) on {machine['date']} at commit "
        f"`{machine['commit']}`; the run took {seconds:.0f} s. Every run checks its outcome: "
        "every job done exactly once (status `done`, `attempts = 1`), nothing left processing.\n",
        _machine(machine),
        "## Targets\n\n" + targets(records),
    ]
    if errors:
        parts.append(f"**Failed steps:** {', '.join(errors)}\n")
    parts += [
        _drain(records),
        _host(records),
        _latency(records),
        _enqueue(records),
        _mixed(records),
        _scale(records),
        _memory(records),
        _pooler(records),
    ]
    parts.append(
        "## Peers (issue #3, same machine class, 5,000 noop jobs, one process)\n\n"
        + (ROOT / "bench" / "peers.md").read_text()
    )
    notes = ROOT / "bench" / "NOTES.md"
    if notes.exists():
        parts.append(notes.read_text())
    return "\n".join(parts)
