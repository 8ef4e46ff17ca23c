"""Small named tasks for the tests (registered through JOBS_TASK_MODULES)."""

import os
import time
from pathlib import Path
from typing import Any

from django.db.backends.signals import connection_created

from jobs.exceptions import PermanentFailure
from jobs.tasks import parent_results, register, report_progress


@register("test.fail")
def fail(payload: Any) -> None:
    """Always raise."""
    raise ValueError(f"failed on {payload!r}")


@register("test.permanent")
def permanent(payload: Any) -> None:
    """Fail without retries."""
    raise PermanentFailure("not worth retrying")


@register("test.sleep")
def sleep(payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep payload['seconds'], touching payload['marker'] (a file) first if given."""
    if marker := payload.get("marker"):
        Path(marker).write_text("started")
    time.sleep(float(payload.get("seconds", 1)))
    return {"slept": payload.get("seconds", 1)}


@register("test.append")
def append(payload: dict[str, Any]) -> str:
    """Append payload['line'] to the file payload['path']: counts executions across processes."""
    with open(payload["path"], "a") as handle:
        handle.write(f"{payload['line']}\n")
    return payload["line"]


@register("test.stamp")
def stamp(payload: dict[str, Any]) -> str:
    """Append "payload['line'] <Unix time the task began>" to the file payload['path']."""
    began = time.time()
    with open(payload["path"], "a") as handle:
        handle.write(f"{payload['line']} {began}\n")
    return payload["line"]


@register("test.pid")
def pid(payload: dict[str, Any]) -> int:
    """Append "<payload['line']> <pid of the process running the task>" to payload['path']."""
    with open(payload["path"], "a") as handle:
        handle.write(f"{payload['line']} {os.getpid()}\n")
    return os.getpid()


@register("test.record")
def record(payload: dict[str, Any]) -> str:
    """Touch payload['marker'] if given, sleep payload['seconds'], then append
    "<payload['line']> <time>" to the file payload['path']: one line per execution."""
    if marker := payload.get("marker"):
        Path(marker).touch()
    time.sleep(float(payload.get("seconds", 0)))
    with open(payload["path"], "a") as handle:
        handle.write(f"{payload['line']} {time.time()}\n")
    return payload["line"]


@register("test.progress")
def progress(payload: Any) -> str:
    """Report 50% ("half way"), then succeed."""
    report_progress(50, "half way")
    return "reported"


@register("test.unserialisable")
def unserialisable(payload: Any) -> object:
    """Return something JSON cannot hold."""
    return object()


@register("test.slow_once")
def slow_once(payload: dict[str, Any]) -> str:
    """First run: create the marker file, then sleep; later runs return at once."""
    marker = Path(payload["marker"])
    if not marker.exists():
        marker.write_text("first")
        time.sleep(float(payload["seconds"]))
        return "first"
    return "second"


@register("test.gate")
def gate(payload: dict[str, Any]) -> str:
    """Write "<pid> <Unix time>" to the file payload['marker'], then wait (up to a
    minute) for the file payload['gate']."""
    Path(payload["marker"]).write_text(f"{os.getpid()} {time.time()}")
    deadline = time.monotonic() + 60
    while not Path(payload["gate"]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "opened"


@register("test.spin")
def spin(payload: Any) -> None:
    """Never return: a busy loop the worker can only stop by killing its executor."""
    while True:
        pass


def _log_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Append this process's id to $TEST_CONNECTION_LOG for each new connection."""
    if path := os.environ.get("TEST_CONNECTION_LOG"):
        with open(path, "a") as handle:
            handle.write(f"{os.getpid()}\n")


connection_created.connect(_log_connection)

# django.tasks tasks, registered when this module loads (workers import it too).
from tests import django_tasks  # noqa: E402, F401


@register("test.span")
def span(payload: dict[str, Any]) -> str:
    """Touch payload['marker'] if given, sleep payload['seconds'], then append
    "<line> <start> <end>" (Unix times) to payload['path']: an execution log."""
    start = time.time()
    if marker := payload.get("marker"):
        Path(marker).touch()
    time.sleep(float(payload.get("seconds", 0)))
    with open(payload["path"], "a") as handle:
        handle.write(f"{payload['line']} {start} {time.time()}\n")
    return payload["line"]


@register("test.span_limited", concurrency=3)
def span_limited(payload: dict[str, Any]) -> str:
    """``test.span`` with at most 3 jobs processing at once, whatever queue or key."""
    return span(payload)


@register(
    "test.per_account",
    concurrency_key=lambda payload: f"account:{payload['account']}",
    key_concurrency=2,
)
def per_account(payload: dict[str, Any]) -> Any:
    """Echo the payload; at most 2 processing per account (its concurrency key)."""
    return payload


@register("test.step")
def step(payload: dict[str, Any]) -> list[Any]:
    """A chain's step: its parent's result (a list) with payload['step'] appended."""
    parents = parent_results()
    before = parents[0]["result"] if parents else []
    return [*before, payload["step"]]


@register("test.member")
def member(payload: dict[str, Any]) -> Any:
    """A group's member: sleep until payload['until'] (Unix time) if given, then fail for
    good when payload['fail'], else return payload['i']."""
    if until := payload.get("until"):
        time.sleep(max(0.0, until - time.time()))
    if payload.get("fail"):
        raise PermanentFailure(f"member {payload['i']} failed")
    return payload["i"]


@register("test.collect")
def collect(payload: dict[str, Any]) -> dict[str, Any]:
    """A group's callback: append a line to payload['path'] (counts its runs across
    processes) and return its parents' outcomes in brief."""
    parents = parent_results()
    with open(payload["path"], "a") as handle:
        handle.write(f"{len(parents)}\n")
    return {
        "count": len(parents),
        "done": sum(p["status"] == "done" for p in parents),
        "failed": sorted(p["name"] for p in parents if p["status"] == "failed"),
        "errors": sorted(p["error"] for p in parents if p["error"]),
        "results": {p["name"]: p["result"] for p in parents},
    }


@register("test.fail_once")
def fail_once(payload: dict[str, Any]) -> str:
    """First run: create the marker file and fail for good; later runs succeed."""
    marker = Path(payload["marker"])
    if not marker.exists():
        marker.write_text("failed")
        raise PermanentFailure("first run fails")
    return "recovered"
