"""The machine description and the markdown report (docs/benchmarks.md)."""

import os
import platform
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import PG_ADMIN_URL, ROOT

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


def _git_commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return proc.stdout.strip() or "unknown"


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
        "python": platform.python_version(),
        "django": django.get_version(),
        "commit": _git_commit(),
    }


def _find(records: Records, **match: Any) -> dict[str, Any] | None:
    for record in records:
        if all(record.get(key) == value for key, value in match.items()):
            return record
    return None


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _drain_rows(records: Records) -> list[list[Any]]:
    rows = []
    for r in records:
        if r["bench"] == "drain":
            label = f"{r['workers']} x `--concurrency {r['concurrency']}`"
            rows.append(
                [
                    r["db"],
                    label,
                    r["batch"],
                    r["jobs"],
                    f"{r['wall_jobs_per_s']:,}",
                    f"{r['drain_jobs_per_s']:,}",
                    r["wall_s"],
                    r["drain_s"],
                ]
            )
    return rows


def _sections(records: Records) -> list[str]:
    out = ["## Drain throughput (pre-enqueued noop jobs, `runworker --once --batch 100`)\n\n"]
    out.append(
        "Wall clock: worker start to last exit (process start-up included, a fixed ~1 s). "
        "Drain: first `started_at` to last `finished_at` in the database.\n\n"
    )
    out.append(
        _table(
            [
                "db",
                "processes x concurrency",
                "batch",
                "jobs",
                "wall jobs/s",
                "drain jobs/s",
                "wall s",
                "drain s",
            ],
            _drain_rows(records),
        )
    )
    out.append("\n## Pickup latency (idle worker, one job at a time, enqueue → finished_at)\n\n")
    out.append(
        _table(
            ["db", "samples", "poll interval", "median ms", "p95 ms", "min ms", "max ms"],
            [
                [
                    r["db"],
                    r["samples"],
                    f"{r['poll_interval_s']} s",
                    r["median_ms"],
                    r["p95_ms"],
                    r["min_ms"],
                    r["max_ms"],
                ]
                for r in records
                if r["bench"] == "latency"
            ],
        )
    )
    out.append("\n## Enqueue\n\n")
    out.append(
        "HTTP: gunicorn `-w 2` (sync workers), DJANGO_DEBUG off, token auth, client threads "
        "with one keep-alive `http.client` connection each; bulk = JSON arrays of 1,000 jobs.\n\n"
    )
    out.append(
        _table(
            [
                "db",
                "mode",
                "jobs",
                "requests",
                "seconds",
                "jobs/s",
                "requests/s",
                "server closed conn.",
            ],
            [
                [
                    r["db"],
                    r["mode"],
                    r["jobs"],
                    r["requests"],
                    r["seconds"],
                    f"{r['jobs_per_s']:,}",
                    f"{r['requests_per_s']:,}",
                    r.get("server_closed_connections", ""),
                ]
                for r in records
                if r["bench"] == "enqueue"
            ],
        )
    )
    out.append("\n## Claim scale (one worker, 5,000 noop jobs, best of two drains each)\n\n")
    out.append(
        _table(
            [
                "db",
                "finished rows",
                "load s",
                "empty table jobs/s",
                "with finished rows jobs/s",
                "ratio",
            ],
            [
                [
                    r["db"],
                    f"{r['finished_rows']:,}",
                    r["load_s"],
                    f"{r['empty_drain_jobs_per_s']:,}",
                    f"{r['full_drain_jobs_per_s']:,}",
                    r["ratio"],
                ]
                for r in records
                if r["bench"] == "scale"
            ],
        )
    )
    out.append(
        "\n## Worker memory (one worker, `--batch 100`, `bench.mark` jobs: a noop that logs "
        "each run)\n\n"
    )
    rows: list[list[Any]] = []
    notes: list[str] = []
    for r in records:
        if r["bench"] == "memory":
            snaps = [(k.removeprefix("after_"), v) for k, v in r.items() if k.startswith("after_")]
            for n, snap in snaps:
                rows.append(
                    [r["db"], f"{int(n):,}", snap["worker_mb"], snap["total_mb"], snap["processes"]]
                )
            rows.append([r["db"], "growth", r["worker_growth_mb"], r["total_growth_mb"], ""])
            if "runs" in r:
                notes.append(
                    f"{r['db']}: {r['runs']:,} task runs logged; "
                    f"{r['jobs_run_more_than_once']} jobs ran more than once.\n"
                )
    out.append(
        _table(["db", "after jobs", "worker RSS MB", "worker + children RSS MB", "processes"], rows)
    )
    out += ["\n", *notes]
    return out


def _target(
    label: str,
    record: dict | None,
    value: Callable[[dict], float],
    goal: str,
    ok: Callable[[float], bool],
    unit: str = "",
) -> list[Any]:
    if record is None:
        return [label, goal, "not measured", "-"]
    measured = value(record)
    return [label, goal, f"{measured:,}{unit}", "**met**" if ok(measured) else "**not met**"]


def _targets(records: Records) -> str:
    def drain(db: str, workers: int) -> dict | None:
        return _find(records, bench="drain", db=db, workers=workers, concurrency=1)

    pg1, pg2 = drain("postgres", 1), drain("postgres", 2)
    rows = [
        _target(
            "drain, SQLite, 1 process (database clock)",
            drain("sqlite", 1),
            lambda r: r["drain_jobs_per_s"],
            "≥ 10,000 jobs/s",
            lambda v: v >= 10_000,
            " jobs/s",
        ),
        _target(
            "drain, PostgreSQL, 1 process (database clock)",
            pg1,
            lambda r: r["drain_jobs_per_s"],
            "≥ 5,000 jobs/s",
            lambda v: v >= 5_000,
            " jobs/s",
        ),
    ]
    if pg1 and pg2:
        rows.append(
            _target(
                "2 processes faster than 1, PostgreSQL",
                pg2,
                lambda r: round(r["drain_jobs_per_s"] / pg1["drain_jobs_per_s"], 2),
                "> 1.0 x the 1-process rate",
                lambda v: v > 1.0,
                " x",
            )
        )
    for db, goal in (("postgres", 10), ("sqlite", 60)):
        rows.append(
            _target(
                f"pickup latency median, {db}",
                _find(records, bench="latency", db=db),
                lambda r: r["median_ms"],
                f"≤ {goal} ms",
                lambda v, g=goal: v <= g,
                " ms",
            )
        )
    for db in ("sqlite", "postgres"):
        for mode in ("python-bulk", "http-bulk"):
            rows.append(
                _target(
                    f"bulk enqueue, {mode}, {db}",
                    _find(records, bench="enqueue", db=db, mode=mode),
                    lambda r: r["jobs_per_s"],
                    "≥ 20,000 jobs/s",
                    lambda v: v >= 20_000,
                    " jobs/s",
                )
            )
        rows.append(
            _target(
                f"single HTTP create, {db}",
                _find(records, bench="enqueue", db=db, mode="http-single"),
                lambda r: r["requests_per_s"],
                "≥ 800 requests/s",
                lambda v: v >= 800,
                " req/s",
            )
        )
    for db in ("postgres", "sqlite"):
        rows.append(
            _target(
                f"drain with 1M finished rows, {db}",
                _find(records, bench="scale", db=db),
                lambda r: r["ratio"],
                "≥ 0.9 x empty-table rate",
                lambda v: v >= 0.9,
                " x",
            )
        )
    rows.append(
        _target(
            "every job ran exactly once (memory run, `bench.mark` run log)",
            _find(records, bench="memory"),
            lambda r: r.get("jobs_run_more_than_once", 0),
            "0 jobs run twice",
            lambda v: v == 0,
            " jobs run twice",
        )
    )
    rows.append(
        _target(
            "worker RSS growth 1,000 → 100,000 jobs (worker + children)",
            _find(records, bench="memory"),
            lambda r: r["total_growth_mb"],
            "< 10 MB",
            lambda v: v < 10,
            " MB",
        )
    )
    return _table(["target (issue #3)", "goal", "measured", "status"], rows)


def markdown(machine: dict[str, Any], records: Records, seconds: float) -> str:
    """The whole report: machine, targets, every table, peers, profile notes."""
    errors = [r for r in records if r["bench"] == "error"]
    parts = [
        "# Benchmarks\n\n",
        f"Written by `make bench` (`python -m bench`) on {machine['date']} at commit "
        f"`{machine['commit']}`; the run took {seconds:.0f} s. Every run checks its outcome: "
        "every job done exactly once (status `done`, `attempts = 1`), nothing left processing.\n\n",
        "## Machine\n\n",
        _table(
            ["", ""],
            [
                ["CPUs (`nproc`)", machine["nproc"]],
                ["CPU", machine["cpu"]],
                ["memory", f"{machine['memory_gb']} GB"],
                [
                    "load average at start (1/5/15 min)",
                    " / ".join(map(str, machine["loadavg_at_start"])),
                ],
                ["PostgreSQL", machine["postgresql"]],
                ["SQLite", machine["sqlite"]],
                ["Python / Django", f"{machine['python']} / {machine['django']}"],
            ],
        ),
        "\nThe machine is shared with other work: a load average above the CPU count means the "
        "benchmark had less than the whole machine, and figures move by ±30% between runs.\n\n",
        "## Targets\n\n",
        _targets(records),
        "\n",
    ]
    if errors:
        parts.append(f"\n**Failed steps:** {', '.join(e['step'] for e in errors)}\n\n")
    parts += _sections(records)
    peers = (ROOT / "bench" / "peers.md").read_text()
    parts += ["\n## Peers (issue #3, same machine class, 5,000 noop jobs, one process)\n\n", peers]
    notes = ROOT / "bench" / "NOTES.md"
    if notes.exists():
        parts += ["\n", notes.read_text()]
    return "".join(parts)
