"""Autovacuum on a large job table under a steady stream of jobs: PostgreSQL's defaults
against per-table settings.

    python -m bench.vacuum [--rows 10000000] [--minutes 5] [--rate 200] [--workers 2]
                           [--interval 10] [--phases defaults,thresholds,index-cleanup]
                           [--port PORT]

Autovacuum is a server setting, and a shared server may run without it, so this runs in a
private cluster started on ``--port`` (``initdb`` under /tmp, removed after) with the
stock settings, every autovacuum and autoanalyze logged (``log_autovacuum_min_duration =
0``) so that the report can say what each did. Its job table gets ``--rows`` finished jobs
and a ``VACUUM ANALYZE`` (a table at rest, as autovacuum leaves an old one); then, for
each phase in turn, on the same table: its storage parameters (``PHASES``), ``--workers``
``runworker`` processes fed ``--rate`` noop jobs a second for ``--minutes``, and every
``--interval`` seconds a sample of the table's dead rows, autovacuum and autoanalyze runs,
the sizes of the heap and of the claim's partial indexes, and one claim's ``SELECT`` under
``EXPLAIN (ANALYZE, BUFFERS)``: the buffers it reads grow with the index entries of jobs
claimed since the last vacuum. Afterwards the enqueue-to-done latency of the jobs created
in each interval, and a manual ``VACUUM`` (timed: the run that phase's settings put off)
so that the next phase starts clean. Prints JSON and writes docs/vacuum.md.
"""

import argparse
import itertools
import json
import os
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import report
from bench.common import ROOT, load_bare, private_postgres, start_workers, stop_workers
from bench.django_env import setup
from bench.purge import FILL, Feeder, latency

# The recommendation (README, "Table maintenance"): vacuum after a fixed number of dead
# rows, whatever the table's size, and analyze after a fixed number of changes. With the
# defaults both scale with the table: 0.2 x rows dead rows, 0.1 x rows changes.
THRESHOLDS = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "50000",
}
PHASES = {
    "defaults": {},
    "thresholds": THRESHOLDS,
    # Vacuum skips the indexes when few heap pages have dead rows (under 2%): the claim
    # indexes keep their dead entries until a vacuum does scan them. This forces it.
    "index-cleanup": {**THRESHOLDS, "vacuum_index_cleanup": "on"},
}
OPTIONS = [*THRESHOLDS, "vacuum_index_cleanup"]
INDEX_KEYS = ["claim_idx", "claim_any_idx", "queued_due_idx"]

STATE = """
SELECT n_dead_tup, n_mod_since_analyze, autovacuum_count, autoanalyze_count,
       pg_relation_size('jobs_job'),
       pg_relation_size('jobs_claim_idx'), pg_relation_size('jobs_claim_any_idx'),
       pg_relation_size('jobs_queued_due_idx'), pg_indexes_size('jobs_job')
FROM pg_stat_user_tables WHERE relname = 'jobs_job'
"""


def fill(rows: int) -> float:
    """Insert ``rows`` jobs finished a day ago (kept by retention) and vacuum; return seconds."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        load_bare(cursor, FILL, [rows, 0])
        cursor.execute("VACUUM ANALYZE jobs_job")
    return round(time.perf_counter() - started, 1)


def configure(options: dict[str, str]) -> None:
    """Give the job table exactly these storage parameters (none: the server's settings)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE jobs_job RESET ({', '.join(OPTIONS)})")
        if options:
            pairs = ", ".join(f"{name} = {value}" for name, value in options.items())
            cursor.execute(f"ALTER TABLE jobs_job SET ({pairs})")


def probe() -> tuple[int, float]:
    """Run one claim's selection of due jobs (100, as a worker's batch) under ``EXPLAIN
    (ANALYZE, BUFFERS)``; return the buffers it touched and its milliseconds."""
    from django.db import connection
    from django.utils import timezone

    from jobs.lifecycle import flow
    from jobs.lifecycle.claim import _due

    due = flow.free_jobs(_due(None, None, timezone.now())).values("pk")[:100]
    sql, params = due.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]
    top = plan["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"], plan["Execution Time"]


def sample(started: float) -> dict[str, Any]:
    from django.db import connection
    from django.utils import timezone

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(STATE)
        dead, changed, vacuums, analyzes, heap, claim, claim_any, due, indexes = cursor.fetchone()
    buffers, ms = probe()
    kb, mb = 1024, 1024 * 1024
    return {
        "s": round(time.monotonic() - started),
        "at": timezone.now(),
        "dead": dead,
        "changed": changed,
        "autovacuums": vacuums,
        "autoanalyzes": analyzes,
        "heap_mb": round(heap / mb, 1),
        "indexes_mb": round(indexes / mb),
        "claim_idx_kb": round(claim / kb),
        "claim_any_idx_kb": round(claim_any / kb),
        "queued_due_idx_kb": round(due / kb),
        "probe_buffers": buffers,
        "probe_ms": round(ms, 2),
        "load": round(os.getloadavg()[0], 1),
    }


ENTRY = re.compile(r'automatic (vacuum|analyze) of table "[^"]*\.jobs_job"')


def autovacuum_log(text: str) -> list[dict[str, Any]]:
    """The server log's autovacuum and autoanalyze reports on the job table."""
    runs = []
    for match in ENTRY.finditer(text):
        end = text.find("\n20", match.end())  # the next line with a timestamp
        body = text[match.end() : end if end != -1 else len(text)]
        run: dict[str, Any] = {"kind": match.group(1)}
        if found := re.search(r"elapsed: ([\d.]+) s", body):
            run["elapsed_s"] = float(found.group(1))
        if found := re.search(r"index scans: (\d+)", body):
            run["index_scans"] = int(found.group(1))
        if found := re.search(r"tuples: (\d+) removed", body):
            run["removed"] = int(found.group(1))
        if found := re.search(r"pages: \d+ removed, (\d+) remain, (\d+) scanned", body):
            run["pages"], run["scanned"] = int(found.group(1)), int(found.group(2))
        runs.append(run)
    return runs


def phase(name: str, args: argparse.Namespace, log: Path) -> dict[str, Any]:
    """Run the workers and the feed under ``name``'s settings; sample; return it all."""
    from django.db import connection

    configure(PHASES[name])
    log_from = log.stat().st_size
    workers = start_workers(args.workers, os.environ["DATABASE_URL"], "--poll-interval", "0.05")
    feeder = Feeder(args.rate)
    try:
        feeder.start()
        time.sleep(20)  # the workers start up and catch up
        started = time.monotonic()
        samples = [sample(started)]
        end = started + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(max(0.0, min(args.interval, end - time.monotonic())))
            samples.append(sample(started))
            print(json.dumps({k: v for k, v in samples[-1].items() if k != "at"}), flush=True)
    finally:
        feeder.stop.set()
        time.sleep(2)  # the last jobs fed finish
        stop_workers(workers)
    windows = [latency(a["at"], b["at"]) for a, b in itertools.pairwise(samples)]
    whole = latency(samples[0]["at"], samples[-1]["at"])
    last_minute = latency(samples[-1]["at"] - timedelta(minutes=1), samples[-1]["at"])
    runs = autovacuum_log(log.read_bytes()[log_from:].decode(errors="replace"))
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE jobs_job")
    vacuum_s = round(time.perf_counter() - started, 1)
    after = sample(time.monotonic())
    for record in [*samples, after]:
        record["at"] = record["at"].isoformat()
    return {
        "phase": name,
        "settings": PHASES[name],
        "samples": samples,
        "windows": windows,
        "latency": whole,
        "latency_last_minute": last_minute,
        "autovacuum_log": runs,
        "vacuum_after_s": vacuum_s,
        "after_vacuum": after,
    }


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """One phase in a few figures."""
    samples, runs = result["samples"], result["autovacuum_log"]
    first, last = samples[0], samples[-1]
    vacuums = [r for r in runs if r["kind"] == "vacuum"]
    analyzes = [r for r in runs if r["kind"] == "analyze"]
    jobs = result["latency"].get("jobs", 0)

    def spread(values: list[float]) -> str:
        return f"{min(values)}-{max(values)}" if values else ""

    return {
        "jobs": jobs,
        "jobs_per_s": result["latency"].get("jobs_per_s", 0),
        "autovacuums": len(vacuums),
        "with_index_scans": sum(1 for r in vacuums if r.get("index_scans")),
        "vacuum_s": spread([r["elapsed_s"] for r in vacuums if "elapsed_s" in r]),
        "autoanalyzes": len(analyzes),
        "analyze_s": spread([r["elapsed_s"] for r in analyzes if "elapsed_s" in r]),
        "dead_max": max(s["dead"] for s in samples),
        "dead_end": last["dead"],
        "dead_per_job": round((last["dead"] - first["dead"]) / jobs, 2) if jobs else 0,
        "changed_per_job": round((last["changed"] - first["changed"]) / jobs, 2) if jobs else 0,
        "heap_mb_per_10k_jobs": round((last["heap_mb"] - first["heap_mb"]) / jobs * 10_000, 2)
        if jobs
        else 0,
        "heap_mb": (first["heap_mb"], last["heap_mb"]),
        **{f"{name}_kb": (first[f"{name}_kb"], last[f"{name}_kb"]) for name in INDEX_KEYS},
        "probe_buffers": (first["probe_buffers"], last["probe_buffers"]),
        "probe_buffers_max": max(s["probe_buffers"] for s in samples),
        "probe_ms": (first["probe_ms"], last["probe_ms"]),
        "probe_ms_max": max(s["probe_ms"] for s in samples),
        "latency": result["latency"],
        "latency_last_minute": result["latency_last_minute"],
        "vacuum_after_s": result["vacuum_after_s"],
        "load": spread([s["load"] for s in samples]),
    }


LABELS = {
    "defaults": "PostgreSQL's defaults",
    "thresholds": "fixed thresholds",
    "index-cleanup": "fixed thresholds, index cleanup on",
}


def _pair(pair: tuple[Any, Any]) -> str:
    return f"{pair[0]:,} → {pair[1]:,}"


def _window(w: dict[str, Any]) -> str:
    return f"{w['p50_ms']} / {w['p99_ms']} / {w['max_ms']}" if w.get("jobs") else ""


def put_off(rows: int, rate: int, defaults: dict[str, Any]) -> str:
    """What the defaults' thresholds mean for a table of ``rows``, from the rows each job
    left dead and changed (the defaults phase, in which no autovacuum ran)."""
    vacuum_at, analyze_at = round(0.2 * rows + 50), round(0.1 * rows + 50)
    jobs_per_vacuum = round(vacuum_at / defaults["dead_per_job"])
    jobs_per_analyze = round(analyze_at / defaults["changed_per_job"])

    def hours(jobs: int) -> str:
        return f"{round(jobs / 40 / 3600, 1)} hours at 40 jobs a second"

    return (
        "## What the defaults put off\n\n"
        f"Each job left {defaults['dead_per_job']} dead rows behind and changed "
        f"{defaults['changed_per_job']} rows (`n_dead_tup`, `n_mod_since_analyze` gained over "
        "the jobs done in the defaults phase, in which no autovacuum ran). With the defaults "
        f"autovacuum vacuums this table after 0.2 x {rows:,} + 50 = {vacuum_at:,} dead rows, "
        f"every {jobs_per_vacuum:,} jobs ({hours(jobs_per_vacuum)}), and analyzes it after "
        f"0.1 x {rows:,} + 50 = {analyze_at:,} changed rows, every {jobs_per_analyze:,} jobs "
        f"({hours(jobs_per_analyze)}): the statistics behind the estimated counts of "
        "`/api/stats` and the planner's choices lag that far behind. Until a vacuum, new "
        "rows do not reuse the space freed in the heap (vacuum updates the free space map): "
        f"the heap grew {defaults['heap_mb_per_10k_jobs']} MB per 10,000 jobs here.\n"
    )


def markdown(result: dict[str, Any], machine: dict[str, Any], seconds: float) -> str:
    phases = result["phases"]
    sums = [summary(p) for p in phases]
    settings = [
        [
            LABELS.get(p["phase"], p["phase"]),
            ", ".join(f"`{k} = {v}`" for k, v in p["settings"].items()) or "none (the server's)",
        ]
        for p in phases
    ]
    metrics = [
        ("machine load average (1 min) over the samples", lambda s: s["load"]),
        ("jobs done", lambda s: f"{s['jobs']:,}"),
        ("jobs done per second", lambda s: s["jobs_per_s"]),
        (
            "autovacuum runs (with an index pass)",
            lambda s: f"{s['autovacuums']} ({s['with_index_scans']})",
        ),
        ("one autovacuum took, s", lambda s: s["vacuum_s"]),
        ("autoanalyze runs", lambda s: s["autoanalyzes"]),
        ("one autoanalyze took, s", lambda s: s["analyze_s"]),
        ("dead rows, most sampled", lambda s: f"{s['dead_max']:,}"),
        ("dead rows at the end", lambda s: f"{s['dead_end']:,}"),
        ("heap MB, start → end", lambda s: _pair(s["heap_mb"])),
        ("heap MB gained per 10,000 jobs", lambda s: s["heap_mb_per_10k_jobs"]),
        ("`jobs_claim_idx` kB, start → end", lambda s: _pair(s["claim_idx_kb"])),
        ("`jobs_claim_any_idx` kB, start → end", lambda s: _pair(s["claim_any_idx_kb"])),
        ("`jobs_queued_due_idx` kB, start → end", lambda s: _pair(s["queued_due_idx_kb"])),
        ("claim `SELECT` buffers, start → end", lambda s: _pair(s["probe_buffers"])),
        ("claim `SELECT` buffers, most", lambda s: f"{s['probe_buffers_max']:,}"),
        ("claim `SELECT` ms, start → end", lambda s: f"{s['probe_ms'][0]} → {s['probe_ms'][1]}"),
        ("claim `SELECT` ms, most", lambda s: s["probe_ms_max"]),
        ("enqueue-to-done p50 / p99 / max ms", lambda s: _window(s["latency"])),
        ("the same, last minute", lambda s: _window(s["latency_last_minute"])),
        ("manual `VACUUM ANALYZE` afterwards, s", lambda s: s["vacuum_after_s"]),
    ]
    header = " | ".join(["", *(LABELS.get(p["phase"], p["phase"]) for p in phases)])
    table = report.table(header, [[label, *(get(s) for s in sums)] for label, get in metrics])
    sections = [
        f"## Phases\n\nEach phase: {result['workers']} `runworker` fed {result['rate']} noop "
        f"jobs a second for {result['minutes']} minutes, on the same table, in this order; "
        "before each, the table's storage parameters are set as below (`ALTER TABLE "
        "jobs_job SET (...)`), and after each a manual `VACUUM ANALYZE` cleans up what it "
        "left, so that the next one starts clean.\n\n"
        + report.table("phase | storage parameters", settings),
        "## Summary\n\nThe claim `SELECT` is one claim's selection of 100 due jobs under "
        "`EXPLAIN (ANALYZE, BUFFERS)`, run by the sampler as the workers run it (every queue: "
        "`jobs_claim_any_idx`). An index the claims scan marks the entries of claimed jobs "
        "dead as it passes them, and a page reuses their space before it splits; an index "
        "no scan reads (`jobs_claim_idx` when no worker names its queues, "
        "`jobs_queued_due_idx` between two dashboard views) keeps one entry per job until a "
        "vacuum scans it. Latency: enqueue to done, database clock. Autovacuum and "
        "autoanalyze runs: the server's log.\n\n" + table,
    ]
    defaults = next(
        (s for p, s in zip(phases, sums, strict=True) if p["phase"] == "defaults"), None
    )
    if (
        defaults
        and defaults["dead_per_job"]
        and not (defaults["autovacuums"] or defaults["autoanalyzes"])
    ):
        sections.append(put_off(result["rows"], result["rate"], defaults))
    for p in phases:
        rows = [
            [
                s["s"],
                f"{s['dead']:,}",
                s["autovacuums"],
                s["autoanalyzes"],
                f"{s['heap_mb']:,}",
                f"{s['claim_idx_kb']:,}",
                f"{s['claim_any_idx_kb']:,}",
                f"{s['queued_due_idx_kb']:,}",
                f"{s['probe_buffers']:,}",
                s["probe_ms"],
                s["load"],
                f"{w.get('jobs', 0):,}",
                _window(w),
            ]
            for s, w in zip(p["samples"], [{}, *p["windows"]], strict=True)
        ]
        runs = [
            [
                r["kind"],
                r.get("elapsed_s", ""),
                r.get("index_scans", ""),
                f"{r['removed']:,}" if "removed" in r else "",
                f"{r['scanned']:,} of {r['pages']:,}" if "pages" in r else "",
            ]
            for r in p["autovacuum_log"]
        ]
        sections.append(
            f"## Samples: {LABELS.get(p['phase'], p['phase'])}\n\n"
            "Autovacuum and autoanalyze runs: the table's counters (cumulative over the run); "
            "latency: of the jobs created since the sample before (p50 / p99 / max ms).\n\n"
            + report.table(
                "s | dead rows | autovacuums | autoanalyzes | heap MB | `jobs_claim_idx` kB "
                "| `jobs_claim_any_idx` kB | `jobs_queued_due_idx` kB | claim buffers "
                "| claim ms | load | jobs done | latency ms",
                rows,
            )
            + (
                "\nThe server's log of each run on the job table:\n\n"
                + report.table(
                    "run | elapsed s | index scans | dead rows removed | pages scanned", runs
                )
                if runs
                else "\nNo autovacuum or autoanalyze of the job table in this phase.\n"
            )
        )
    return report.standalone(
        "Autovacuum on a large job table",
        machine,
        seconds,
        f"PostgreSQL, a private cluster with stock settings (autovacuum on, "
        f"`autovacuum_naptime = 60s`), {result['rows']:,} finished jobs filled in "
        f"{result['fill_s']} s",
        *sections,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--phases", default=",".join(PHASES), help=f"of {', '.join(PHASES)}")
    parser.add_argument("--port", type=int, default=19100, help="the private cluster's port")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "vacuum.md")
    args = parser.parse_args()
    names = args.phases.split(",")
    if unknown := [name for name in names if name not in PHASES]:
        parser.error(f"unknown phases: {', '.join(unknown)}")
    machine = report.machine()
    started = time.monotonic()
    with private_postgres(args.port, log_autovacuum_min_duration="0") as cluster:
        setup(cluster.create_database("vacuum"))
        from django.core.management import call_command
        from django.db import connections

        try:
            call_command("migrate", verbosity=0)
            result = {
                "rows": args.rows,
                "rate": args.rate,
                "workers": args.workers,
                "minutes": args.minutes,
                "fill_s": fill(args.rows),
                "phases": [phase(name, args, cluster.log) for name in names],
            }
        finally:
            connections.close_all()
    print(json.dumps(result, indent=2, default=str))
    report.write(args.output, markdown(result, machine, time.monotonic() - started))


if __name__ == "__main__":
    main()
