"""Flow control across real worker processes: 4 runworker processes, 2 executors each,
default batches. Every check reads the execution log the tasks write (start and end
times), never the database's own count."""

import os
import signal
from pathlib import Path

import pytest

from jobs import lifecycle
from jobs.models import Job, Queue, Status
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

WORKERS = 4


def start_workers(processes, count: int = WORKERS, env: dict[str, str] | None = None) -> list:
    return [processes.worker("--concurrency", "2", env=env) for _ in range(count)]


def read_log(path: Path) -> list[tuple[str, float, float]]:
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(line, float(start), float(end)) for line, start, end in rows]


def all_done(count: int):
    """``count`` of the test's jobs done (the first worker's built-in purge schedule may
    fire a job of its own at a quarter hour)."""
    return lambda: (
        Job.objects.filter(status=Status.DONE).exclude(task="jobs.purge").count() == count
    )


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant (an end at t comes before a start at t)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def span_jobs(path: Path, count: int, queue: str, seconds: float = 0.0, key=None) -> None:
    lifecycle.enqueue_many(
        [
            {
                "task": "test.span",
                "queue": queue,
                "payload": {"path": str(path), "line": key(i) if key else str(i)}
                | {"seconds": seconds},
                **({"concurrency_key": key(i)} if key else {}),
            }
            for i in range(count)
        ]
    )


def test_a_queue_limited_to_2_never_runs_more_than_2(processes, tmp_path):
    Queue.objects.create(name="limited", concurrency=2)
    log = tmp_path / "log"
    span_jobs(log, 40, "limited", seconds=0.05)
    span_jobs(tmp_path / "other", 40, "other")  # unlimited, beside it
    start_workers(processes)
    wait_for(all_done(80), timeout=120)
    spans = [(start, end) for _, start, end in read_log(log)]
    assert len(spans) == 40
    assert most_at_once(spans) == 2


def test_one_per_key_over_20_keys_and_500_jobs(processes, tmp_path):
    log = tmp_path / "log"
    span_jobs(log, 500, "default", key=lambda i: f"key-{i % 20}")
    start_workers(processes)
    wait_for(all_done(500), timeout=240)
    rows = read_log(log)
    assert len(rows) == 500
    for key in {line for line, _, _ in rows}:
        spans = [(start, end) for line, start, end in rows if line == key]
        assert len(spans) == 25 and most_at_once(spans) == 1, key


def test_a_task_limited_to_3_never_runs_more_than_3(processes, tmp_path):
    log = tmp_path / "log"
    lifecycle.enqueue_many(
        [
            {
                "task": "test.span_limited",
                "queue": f"q{i % 2}",
                "payload": {"path": str(log), "line": str(i), "seconds": 0.05},
            }
            for i in range(60)
        ]
    )
    span_jobs(tmp_path / "other", 40, "q0")  # another task in the same queue: not limited
    start_workers(processes)
    wait_for(all_done(100), timeout=120)
    spans = [(start, end) for _, start, end in read_log(log)]
    assert len(spans) == 60
    assert most_at_once(spans) == 3


def most_in_a_second(starts: list[float]) -> int:
    """The most starts in any window of one second."""
    starts = sorted(starts)
    return max(sum(1 for t in starts[i:] if t < s + 1.0) for i, s in enumerate(starts))


def test_a_rate_of_20_per_second_over_200_jobs(processes, tmp_path):
    log = tmp_path / "log"
    span_jobs(log, 200, "rated")
    start_workers(processes, env={"JOBS_QUEUES": '{"rated": {"rate": "20/s"}}'})
    wait_for(all_done(200), timeout=120)
    starts = sorted(start for _, start, _ in read_log(log))
    assert len(starts) == 200
    assert most_in_a_second(starts) <= 20
    assert starts[-1] - starts[0] >= 9.0  # 200 starts at 20 a second take 9 s at least


def test_a_rate_of_5_per_second_per_key(processes, tmp_path):
    Queue.objects.create(name="rated", key_rate="5/s", key_concurrency=100)
    log = tmp_path / "log"
    span_jobs(log, 60, "rated", key=lambda i: f"key-{i % 3}")
    start_workers(processes)
    wait_for(all_done(60), timeout=120)
    rows = read_log(log)
    assert len(rows) == 60
    for key in ("key-0", "key-1", "key-2"):
        assert most_in_a_second([start for line, start, _ in rows if line == key]) <= 5


def test_a_paused_queue_starts_nothing_until_resumed(processes, tmp_path):
    lifecycle.pause_queue(name="held")
    log = tmp_path / "log"
    span_jobs(log, 30, "held")
    span_jobs(tmp_path / "other", 10, "other")
    start_workers(processes)
    wait_for(all_done(10), timeout=60)  # the other queue's jobs ran meanwhile
    assert read_log(log) == []
    assert Job.objects.filter(queue="held", status=Status.QUEUED).count() == 30
    lifecycle.resume_queue(name="held")
    wait_for(all_done(40), timeout=60)
    assert len(read_log(log)) == 30


def test_a_killed_worker_gives_its_slot_back_after_its_lease(processes, tmp_path):
    Queue.objects.create(name="one", concurrency=1)
    marker = tmp_path / "first"
    held = lifecycle.enqueue(
        task="test.slow_once", queue="one", payload={"marker": str(marker), "seconds": 60}
    )[0]
    env = {"JOBS_LEASE_SECONDS": "1.5"}
    victim = processes.worker("--concurrency", "2", env=env)
    wait_for(marker.exists)
    log = tmp_path / "log"
    span_jobs(log, 5, "one")
    os.killpg(victim.pid, signal.SIGKILL)  # with its executors: the slot's holder is gone
    start_workers(processes, count=2, env=env)
    wait_for(all_done(6), timeout=60)
    assert Job.objects.get(pk=held.pk).history.get().outcome == "lost"
    assert len(read_log(log)) == 5
