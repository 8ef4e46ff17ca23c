"""Prometheus metrics: counters recorded where outcomes happen, gauges read at scrape time.

Counters and the duration histogram are per process: the lifecycle records
them in whichever process makes the transition (an executor child, a worker, a
web process). With ``PROMETHEUS_MULTIPROC_DIR`` set, ``prometheus_client``
keeps them in files in that directory, one set per process, and ``render``
adds up all of them; every process on a machine must share the directory, and
it must be set before the process first records (``manage.py serve`` sets one
when it is unset). Without it, each process only sees its own numbers.

Queue gauges (depth, lag, recent throughput, live workers) come from the
database on each scrape (``jobs.observability.stats``), so they describe the whole cluster
whichever host answers.

``prometheus_client`` is imported on first use, not at module import: it picks
its storage from the environment when imported. It is the optional ``metrics``
extra (``pip install jobqueue[metrics]``): without it, recording does nothing
and ``render`` raises ``MetricsUnavailable``, which ``GET /metrics`` answers
with a 501.
"""

import contextlib
import functools
import glob
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from jobs.observability import stats

# Seconds: from sub-second tasks up to the default ten-minute timeout.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf"))


_first_use = threading.Lock()


class MetricsUnavailable(RuntimeError):
    """``prometheus_client`` is not installed: there are no metrics to serve."""


@functools.cache
def enabled() -> bool:
    """Return whether ``prometheus_client`` is installed (looked up once, not imported)."""
    return importlib.util.find_spec("prometheus_client") is not None


def _instruments() -> dict[str, Any]:
    """This process's instruments, made on first use. Under a lock: the threads of a
    threaded gunicorn worker record their first transitions at the same moment, and
    making the instruments twice fails (prometheus_client refuses duplicates)."""
    with _first_use:
        return _make_instruments()


@functools.cache
def _make_instruments() -> dict[str, Any]:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
    elif directory is not None:
        # Set but empty means "off"; prometheus_client would take any value as a path.
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    from prometheus_client import Counter, Histogram

    labels = ["task", "queue"]
    return {
        "enqueued": Counter("jobqueue_jobs_enqueued", "Jobs created.", labels),
        "attempts": Counter(
            "jobqueue_attempts",
            "Finished attempts by outcome (done, failed, timed_out, lost).",
            [*labels, "outcome"],
        ),
        "finished": Counter(
            "jobqueue_jobs_finished",
            "Jobs that reached done or failed (no attempts left).",
            [*labels, "status"],
        ),
        "duration": Histogram(
            "jobqueue_attempt_duration_seconds",
            "Seconds from claim to outcome, per attempt.",
            [*labels, "outcome"],
            buckets=DURATION_BUCKETS,
        ),
    }


def record_enqueued(*, task: str, queue: str, count: int = 1) -> None:
    """Count ``count`` new jobs of ``task`` on ``queue``."""
    if not enabled():
        return
    _instruments()["enqueued"].labels(task, queue).inc(count)


def record_attempt(
    *, task: str, queue: str, outcome: str, status: str, duration: float | None
) -> None:
    """Count a finished attempt, its duration, and the job's end if ``status`` is final."""
    if not enabled():
        return
    instruments = _instruments()
    instruments["attempts"].labels(task, queue, outcome).inc()
    if duration is not None:
        instruments["duration"].labels(task, queue, outcome).observe(duration)
    if status in ("done", "failed"):
        instruments["finished"].labels(task, queue, status).inc()


class QueueCollector:
    """Yield the queue gauges from one ``jobs.observability.stats`` snapshot per scrape."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        snap = stats.snapshot()
        jobs = GaugeMetricFamily(
            "jobqueue_jobs",
            "Jobs per status (queued, processing exact; finished ones exact up to "
            "JOBS_STATS_EXACT_LIMIT, else estimated, see jobqueue_jobs_exact).",
            labels=["status"],
        )
        exact = GaugeMetricFamily(
            "jobqueue_jobs_exact", "1 if jobqueue_jobs is an exact count.", labels=["status"]
        )
        for status, entry in snap["statuses"].items():
            jobs.add_metric([status], entry["count"])
            exact.add_metric([status], 1 if entry["exact"] else 0)
        yield jobs
        yield exact
        yield from _queue_families(snap)
        alive = GaugeMetricFamily("jobqueue_workers_alive", "Workers with a recent heartbeat.")
        alive.add_metric([], snap["workers"]["alive"])
        yield alive


def _queue_families(snap: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    depth = GaugeMetricFamily(
        "jobqueue_queue_jobs",
        "Queued, processing and waiting jobs per queue.",
        labels=["queue", "status"],
    )
    lag = GaugeMetricFamily(
        "jobqueue_queue_lag_seconds",
        "Age of the oldest due queued job per queue (0 when none is waiting).",
        labels=["queue"],
    )
    recent = GaugeMetricFamily(
        "jobqueue_queue_finished_recent",
        "Jobs done or failed in the last window (1m, 5m, 60m) per queue.",
        labels=["queue", "status", "window"],
    )
    for queue, entry in snap["queues"].items():
        for status in ("queued", "processing", "waiting"):
            depth.add_metric([queue, status], entry[status])
        lag.add_metric([queue], entry["lag_seconds"] or 0.0)
        for window, counts in entry["finished"].items():
            for status, count in counts.items():
                recent.add_metric([queue, status, window.removeprefix("last_")], count)
    yield from (depth, lag, recent)


def render(accept: str = "") -> tuple[bytes, str]:
    """Return the metrics page and its content type, for ``GET /metrics``.

    Raises ``MetricsUnavailable`` without ``prometheus_client``.
    """
    if not enabled():
        raise MetricsUnavailable(
            "Metrics need prometheus_client: install the metrics extra (jobqueue[metrics])."
        )

    from prometheus_client import REGISTRY, CollectorRegistry, exposition, multiprocess

    _instruments()  # so the families show up even before anything is recorded
    registry = CollectorRegistry()
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry.register(_ProcessFiles(directory, multiprocess.MultiProcessCollector.merge))
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(QueueCollector())
    encoder, content_type = exposition.choose_encoder(accept)
    return encoder(registry), content_type


class _ProcessFiles:
    """Every process's metric files (prometheus_client's multiprocess mode), empty ones left
    out: a process creating its file leaves it empty for an instant, and reading it then
    raised ``struct.error`` (a 500 from ``/metrics``). An empty file holds no samples."""

    def __init__(self, directory: str, merge: Callable[..., Any]) -> None:
        self.directory = directory
        self.merge = merge

    def collect(self) -> Any:
        files = []
        for path in glob.glob(os.path.join(self.directory, "*.db")):
            with contextlib.suppress(FileNotFoundError):  # a dead process's, just removed
                if os.path.getsize(path):
                    files.append(path)
        return self.merge(files, accumulate=True)


class _Forward:
    """Expose another registry's metrics (this process's own, without multiprocess mode)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        return self.registry.collect()
