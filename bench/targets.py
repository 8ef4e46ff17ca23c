"""The targets, checked against a run's records."""

from collections.abc import Callable
from typing import Any

Records = list[dict[str, Any]]


def _find(records: Records, **match: Any) -> dict[str, Any] | None:
    for record in records:
        if all(record.get(key) == value for key, value in match.items()):
            return record
    return None


DATABASES = (("sqlite", "SQLite"), ("postgres", "PostgreSQL"))

# (label, record filter, value, goal text, check, unit)
TARGETS: list[
    tuple[str, dict[str, Any], Callable[[dict], float], str, Callable[[float], bool], str]
] = [
    *[
        (
            f"drain, {name}, 1 process, {label} (database clock)",
            {"bench": "drain", "db": db, "workers": 1, "concurrency": 1, "batch": batch},
            lambda r: r["drain_jobs_per_s"],
            f"≥ {goal:,} jobs/s",
            lambda v, goal=goal: v >= goal,
            " jobs/s",
        )
        for batch, label, goals in (
            ("default", "runworker's defaults", (5_000, 3_000)),
            (100, "`--batch 100`", (10_000, 5_000)),
        )
        for (db, name), goal in zip(DATABASES, goals, strict=True)
    ],
    *[
        (
            f"drain under a host's settings (`CONN_MAX_AGE = 0`), {name}, {label}",
            {"bench": "host", "db": db, "settings": "host", "batch": batch},
            lambda r: r["ratio_to_repo"],
            "≥ 0.9 x this repository's settings",
            lambda v: v >= 0.9,
            " x",
        )
        for db, name in DATABASES
        for batch, label in (("default", "runworker's defaults"), (1, "`--batch 1`"))
    ],
    (
        "pickup latency median, PostgreSQL",
        {"bench": "latency", "db": "postgres"},
        lambda r: r["median_ms"],
        "≤ 10 ms",
        lambda v: v <= 10,
        " ms",
    ),
    (
        "pickup latency median, SQLite",
        {"bench": "latency", "db": "sqlite"},
        lambda r: r["median_ms"],
        "≤ 60 ms",
        lambda v: v <= 60,
        " ms",
    ),
    *[
        (
            f"bulk enqueue, {mode}, {db}",
            {"bench": "enqueue", "db": db, "mode": mode},
            lambda r: r["jobs_per_s"],
            "≥ 20,000 jobs/s",
            lambda v: v >= 20_000,
            " jobs/s",
        )
        for db in ("sqlite", "postgres")
        for mode in ("python-bulk", "http-bulk")
    ],
    *[
        (
            f"enqueue one at a time from Python, {db}",
            {"bench": "enqueue", "db": db, "mode": "python-single"},
            lambda r: r["jobs_per_s"],
            f"≥ {goal:,} jobs/s",
            lambda v, goal=goal: v >= goal,
            " jobs/s",
        )
        for db, goal in (("sqlite", 4_500), ("postgres", 2_700))
    ],
    *[
        (
            f"single HTTP create, {db}",
            {"bench": "enqueue", "db": db, "mode": "http-single"},
            lambda r: r["requests_per_s"],
            f"≥ {goal:,} requests/s",
            lambda v, goal=goal: v >= goal,
            " req/s",
        )
        for db, goal in (("sqlite", 1_000), ("postgres", 800))
    ],
    *[
        (
            f"drain with 1M finished rows, {db}",
            {"bench": "scale", "db": db},
            lambda r: r["ratio"],
            "≥ 0.9 x empty-table rate",
            lambda v: v >= 0.9,
            " x",
        )
        for db in ("postgres", "sqlite", "mysql")
    ],
    (
        "every job ran exactly once (memory run, `bench.mark` run log)",
        {"bench": "memory"},
        lambda r: r.get("jobs_run_more_than_once", 0),
        "0 jobs run twice",
        lambda v: v == 0,
        " jobs run twice",
    ),
    (
        "worker RSS growth 1,000 → 100,000 jobs (worker + children)",
        {"bench": "memory"},
        lambda r: r["total_growth_mb"],
        "< 10 MB",
        lambda v: v < 10,
        " MB",
    ),
]


def targets(records: Records) -> str:
    """The targets as a markdown table: goal, measured value, met or not."""
    from bench.report import table

    rows = []
    for label, match, value, goal, ok, unit in TARGETS:
        record = _find(records, **match)
        if record is None:
            rows.append([label, goal, "not measured", "-"])
            continue
        measured = value(record)
        rows.append(
            [label, goal, f"{measured:,}{unit}", "**met**" if ok(measured) else "**not met**"]
        )
    pg = {
        w: _find(records, bench="drain", db="postgres", workers=w, concurrency=1, batch="default")
        for w in (1, 2)
    }
    if pg[1] and pg[2]:
        ratio = round(pg[2]["drain_jobs_per_s"] / pg[1]["drain_jobs_per_s"], 2)
        rows.insert(
            4,
            [
                "2 processes faster than 1, PostgreSQL",
                "> 1.0 x the 1-process rate",
                f"{ratio} x",
                "**met**" if ratio > 1.0 else "**not met**",
            ],
        )
    met = [row[0] for row in rows if row[3] == "**met**"]
    summary = (
        f"\n{len(met)} of {len(rows)} targets met in this run: {'; '.join(met) or 'none'}. "
        "The others are not met; see the profiles below for where the time goes.\n"
    )
    return table("target | goal | measured | status", rows) + summary
