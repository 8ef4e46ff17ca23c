"""bench.vacuum reads each autovacuum of the job table from the server's log, and its
report renders (the measurement itself needs a private PostgreSQL cluster and minutes)."""

from bench import vacuum

LOG = """\
2026-11-30 22:41:44 UTC [1] LOG:  automatic vacuum of table "v.public.jobs_worker": index scans: 1
\tpages: 1 removed, 0 remain, 1 scanned (100.00% of total)
\tsystem usage: CPU: user: 0.00 s, system: 0.00 s, elapsed: 0.01 s
2026-11-30 22:42:44 UTC [2] LOG:  automatic vacuum of table "v.public.jobs_job": index scans: 0
\tpages: 0 removed, 204512 remain, 1310 scanned (0.64% of total)
\ttuples: 12040 removed, 10001502 remain, 0 are dead but not yet removable
\tindex scan bypassed: 1203 pages from table (0.59% of total) have 12040 dead item identifiers
\tsystem usage: CPU: user: 0.05 s, system: 0.01 s, elapsed: 0.42 s
2026-11-30 22:42:45.500 UTC [8700] LOG:  automatic analyze of table "v.public.jobs_job"
\tavg read rate: 20.1 MB/s, avg write rate: 0.2 MB/s
\tsystem usage: CPU: user: 0.31 s, system: 0.05 s, elapsed: 1.37 s
2026-11-30 22:42:46.000 UTC [5360] LOG:  checkpoint starting: time
"""


def test_the_log_gives_each_run_on_the_job_table():
    assert vacuum.autovacuum_log(LOG) == [
        {
            "kind": "vacuum",
            "elapsed_s": 0.42,
            "index_scans": 0,
            "removed": 12040,
            "pages": 204512,
            "scanned": 1310,
        },
        {"kind": "analyze", "elapsed_s": 1.37},
    ]


def _sample(s: int, dead: int, heap: float) -> dict:
    return {
        "s": s,
        "at": "2026-11-30T22:00:00+00:00",
        "dead": dead,
        "changed": dead * 2,
        "autovacuums": 0,
        "autoanalyzes": 0,
        "heap_mb": heap,
        "indexes_mb": 200,
        "claim_idx_kb": 8,
        "claim_any_idx_kb": 8,
        "queued_due_idx_kb": 8,
        "probe_buffers": 3,
        "probe_ms": 0.05,
        "load": 1.5,
    }


def test_the_report_renders():
    window = {"jobs": 1000, "seconds": 10.0, "jobs_per_s": 100.0, "p50_ms": 9}
    window |= {"p99_ms": 30, "max_ms": 41}
    phase = {
        "phase": "defaults",
        "settings": {},
        "samples": [_sample(0, 0, 100.0), _sample(10, 2500, 100.4)],
        "windows": [window],
        "latency": window,
        "latency_last_minute": window,
        "autovacuum_log": vacuum.autovacuum_log(LOG),
        "vacuum_after_s": 1.2,
    }
    phase["autovacuum_log"] = []
    result = {"rows": 1_000_000, "rate": 100, "workers": 2, "minutes": 5, "fill_s": 9.0}
    result["phases"] = [phase, {**phase, "phase": "thresholds", "settings": vacuum.THRESHOLDS}]
    machine = {
        "command": "python -m bench.vacuum",
        "date": "2026-11-30 22:00 UTC",
        "commit": "abc1234",
        "nproc": 2,
        "cpu": "AMD EPYC",
        "memory_gb": 23.5,
        "loadavg_at_start": [1.0, 1.0, 1.0],
        "postgresql": "15",
        "sqlite": "3.40.1",
        "python": "3.12.1",
        "django": "6.1.3",
    }
    text = vacuum.markdown(result, machine, 60)
    assert "## What the defaults put off" in text
    assert "after 0.2 x 1,000,000 + 50 = 200,050 dead rows, every 80,020 jobs" in text
    assert "`autovacuum_vacuum_threshold = 10000`" in text
