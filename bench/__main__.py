"""Run the benchmarks: ``python -m bench [GROUP ...] [--db sqlite|postgres|mysql] [--output PATH]``.

Groups: drain, host, latency, enqueue, mixed, scale, memory, pooler (default: all; pooler
is PostgreSQL's: 100 workers through a private PgBouncer, as ``make bench-pooler``). Each
measurement runs in a process of its own against a fresh database and prints one JSON line;
this runner echoes them. Databases: SQLite, PostgreSQL, and MariaDB/MySQL when a server
answers at ``BENCH_MYSQL_URL`` (its rows: the two drains, pickup latency, enqueue and the
million-row ratio; not the host-settings and mixed-workload runs). A full run (every
group, SQLite and PostgreSQL at least) writes docs/benchmarks.md; a partial one writes
only with ``--output``, except ``pooler`` alone, which replaces its own section of
docs/benchmarks.md. ``make bench-mariadb`` measures MariaDB alone (``--db mysql``) into
docs/benchmarks-mariadb.md.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.common import DATABASES, ROOT, drop_templates, emit

# (worker processes, concurrency, --batch, log level): runworker's defaults (no --batch,
# INFO), and the tuned setting the earlier reports measured (--batch 100, WARNING).
DRAINS = [
    (1, 1, None, "INFO"),
    (2, 1, None, "INFO"),
    (4, 1, None, "INFO"),
    (1, 2, None, "INFO"),
    (1, 1, 100, "WARNING"),
]
# MariaDB/MySQL (a report of its own): runworker's defaults and the tuned setting, and
# 2,000 jobs a drain, so that the whole MariaDB run stays within minutes.
MYSQL_DRAINS = [DRAINS[0], DRAINS[-1]]
MYSQL_JOBS = ["--jobs", "2000"]
HOST_RUNS = [(None, 5000), (1, 2000)]  # (batch, jobs): runworker's default, one job per claim
MIXED = ["default", "no-hand-back", "batch-1"]


def plan(groups: list[str], dbs: list[str]) -> list[list[str]]:
    """The measurements to run, as ``python -m`` argument lists, in order."""
    steps: list[list[str]] = []
    for db in dbs:
        if "drain" in groups:
            for workers, concurrency, batch, level in MYSQL_DRAINS if db == "mysql" else DRAINS:
                steps.append(
                    ["bench.drain", db, "--workers", str(workers)]
                    + ["--concurrency", str(concurrency), "--log-level", level]
                    + (["--batch", str(batch)] if batch else [])
                    + (MYSQL_JOBS if db == "mysql" else [])
                )
        if "host" in groups and db != "mysql":
            steps += [
                ["bench.host", db, "--jobs", str(jobs), *(["--batch", str(batch)] if batch else [])]
                for batch, jobs in HOST_RUNS
            ]
    for group, module in [("latency", "bench.latency"), ("enqueue", "bench.enqueue")]:
        steps += [[module, db] for db in dbs if group in groups]
    if "mixed" in groups:
        steps += [
            ["bench.mixed", db, "--variant", variant]
            for db in dbs
            if db != "mysql"
            for variant in MIXED
        ]
    if "scale" in groups:
        steps += [["bench.scale", db] for db in ("postgres", "sqlite") if db in dbs]
        if "mysql" in dbs:
            steps.append(["bench.scale", "mysql"])
    if "memory" in groups:
        steps.append(["bench.memory", "sqlite" if "sqlite" in dbs else dbs[0]])
    if "pooler" in groups and "postgres" in dbs:
        steps.append(["bench.pooler"])
    return steps


def run_step(args: list[str]) -> list[dict[str, Any]]:
    """Run one measurement process; echo and return its JSON lines."""
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    records = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            records.append(emit(json.loads(line)))
        else:
            print(line, file=sys.stderr)
    if proc.returncode != 0:
        records.append(emit({"bench": "error", "step": " ".join(args), "rc": proc.returncode}))
    return records


def rerender(log: Path, output: Path) -> None:
    """Write the report again from a run's JSON lines (e.g. after editing bench/NOTES.md)."""
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    machine = next(r for r in records if r["bench"] == "machine")
    total = next(r["seconds"] for r in records if r["bench"] == "total")
    measured = [r for r in records if r["bench"] not in ("machine", "total")]
    output.write_text(report.markdown(machine, measured, total))
    print(f"wrote {output}", file=sys.stderr)


def main() -> None:
    groups = ["drain", "host", "latency", "enqueue", "mixed", "scale", "memory", "pooler"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("groups", nargs="*", help=f"any of {', '.join(groups)} (default: all)")
    parser.add_argument("--db", choices=DATABASES, action="append")
    parser.add_argument("--output", type=Path, help="write the markdown report here")
    parser.add_argument(
        "--from-log", type=Path, help="only write the report from the JSON lines of an earlier run"
    )
    args = parser.parse_args()
    if args.from_log:
        rerender(args.from_log, args.output or ROOT / "docs" / "benchmarks.md")
        return
    if unknown := set(args.groups) - set(groups):
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    args.groups = args.groups or groups
    machine = emit(report.machine())
    dbs = args.db or ["sqlite", "postgres", *(["mysql"] if machine["mariadb"] else [])]
    drop_templates()  # migrate afresh: the code may have new migrations
    started = time.monotonic()
    records = [record for step in plan(args.groups, dbs) for record in run_step(step)]
    emit({"bench": "total", "seconds": round(time.monotonic() - started, 1)})
    drop_templates()
    output = args.output
    if output is None and set(args.groups) == set(groups) and {"postgres", "sqlite"} <= set(dbs):
        output = ROOT / "docs" / "benchmarks.md"
    elif output is None and args.groups == ["pooler"]:
        # The 100-worker run alone (minutes of its own): its section of the report only.
        report.update_pooler(
            ROOT / "docs" / "benchmarks.md", machine, records, time.monotonic() - started
        )
    if output is not None:
        output.write_text(report.markdown(machine, records, time.monotonic() - started))
        print(f"wrote {output}", file=sys.stderr)
    if any(record["bench"] == "error" for record in records):
        sys.exit(1)


if __name__ == "__main__":
    main()
