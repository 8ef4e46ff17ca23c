"""Drain rate under a host project's settings, next to this repository's settings.

    python -m bench.host sqlite|postgres [--jobs 2000] [--batch N] [--repeat 3]

A project that installs jobqueue keeps Django's defaults: ``CONN_MAX_AGE = 0``,
SQLite without WAL, busy timeout or IMMEDIATE transactions, no LOGGING
(``bench/host_settings.py``). This measures one ``runworker --once`` process
draining ``--jobs`` noop jobs under those settings and under this repository's
(``jobqueue/settings.py``: connections kept 600 s, SQLite tuned), on one fresh
database. Rounds alternate between the two settings so the machine's load hits
both alike; before a host round an SQLite file is put back in rollback-journal
mode, as a fresh host database is (the repository's settings switch it to WAL).
Prints one JSON line per settings module with the median round's drain rate
(database clock: first ``started_at`` to last ``finished_at``) and, on the host's
line, its ratio to the repository's.
"""

import argparse
import sqlite3
import statistics

from bench.common import DATABASES, database_url, drop_database, emit, start_workers, wait_all
from bench.django_env import setup

SETTINGS = {"repo": "jobqueue.settings", "host": "bench.host_settings"}


def _rollback_journal(url: str) -> None:
    """Put an SQLite file back in Django's default journal mode (WAL persists in the file)."""
    from django.db import connection

    connection.close()  # the switch needs the only connection
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    if mode != "delete":
        raise SystemExit(f"could not leave WAL mode: journal_mode={mode}")


def round_(url: str, side: str, jobs: int, batch: int | None) -> float:
    """Queue and drain ``jobs`` under ``side``'s settings; return the drain rate (jobs/s)."""
    from django.utils import timezone

    from bench.outcome import check_outcome, drain_window, enqueue_noops

    mark = timezone.now()
    enqueue_noops(jobs)
    if side == "host" and url.startswith("sqlite:///"):
        _rollback_journal(url)
    flags = ["--batch", str(batch)] if batch else []  # none: runworker's default
    workers = start_workers(1, url, "--once", *flags, DJANGO_SETTINGS_MODULE=SETTINGS[side])
    wait_all(workers)
    check_outcome(jobs, created_at__gte=mark)
    window, _ = drain_window(created_at__gte=mark)
    return jobs / window


def run(kind: str, jobs: int, batch: int | None, repeat: int) -> list[dict]:
    url = database_url(kind, f"host_{batch or 'default'}")
    setup(url)
    rates: dict[str, list[float]] = {side: [] for side in SETTINGS}
    for _ in range(repeat):
        for side in SETTINGS:
            rates[side].append(round_(url, side, jobs, batch))
    from django.db import connection

    connection.close()
    drop_database(url)
    medians = {side: statistics.median(values) for side, values in rates.items()}
    return [
        emit(
            {
                "bench": "host",
                "db": kind,
                "settings": side,
                "batch": batch or "default",
                "jobs": jobs,
                "rounds": repeat,
                "drain_jobs_per_s": round(medians[side]),
                "all_drain_jobs_per_s": [round(rate) for rate in rates[side]],
                **(
                    {"ratio_to_repo": round(medians["host"] / medians["repo"], 3)}
                    if side == "host"
                    else {}
                ),
            }
        )
        for side in SETTINGS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("db", choices=DATABASES)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batch", type=int, help="runworker --batch (default: none given)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run(args.db, args.jobs, args.batch, args.repeat)


if __name__ == "__main__":
    main()
