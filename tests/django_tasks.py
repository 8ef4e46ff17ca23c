"""``django.tasks`` tasks for the backend tests (imported by ``tests.tasks``)."""

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from django.tasks import TaskContext, task

from jobs.backends import task as jobs_task
from jobs.tasks import areport_progress, report_progress


@task
def add(a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b


@task()
def fail(message: str) -> None:
    raise ValueError(message)


@task
def fail_nested() -> None:
    try:
        raise KeyError("inner")
    except KeyError as exc:
        raise RuntimeError("outer") from exc


@task
def exit_task() -> None:
    sys.exit(3)


@task
def unserialisable() -> object:
    return object()


@task(takes_context=True)
def with_context(context: TaskContext, value: Any) -> dict[str, Any]:
    return {
        "id": context.task_result.id,
        "attempt": context.attempt,
        "status": context.task_result.status,
        "worker_ids": context.task_result.worker_ids,
        "value": value,
    }


@task
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def record(path: str, line: str) -> str:
    """Append ``line`` to the file ``path``: shows the order tasks ran in."""
    with open(path, "a") as handle:
        handle.write(f"{line}\n")
    return line


@task(max_attempts=2)
def flaky(path: str) -> str:
    """Fail on the first attempt, succeed on the second (the file counts attempts)."""
    with open(path, "a") as handle:
        handle.write("x")
    with open(path) as handle:
        if len(handle.read()) < 2:
            raise ConnectionError("first attempt fails")
    return "ok"


@task
def progress(steps: int) -> int:
    for step in range(1, steps + 1):
        report_progress(100 * step / steps, f"step {step} of {steps}")
    return steps


@task(queue_name="mail")
def on_mail_queue() -> str:
    return "mail"


@task
async def async_progress() -> bool:
    return await areport_progress(30, "from a coroutine")


@task
def wait_for_file(started: str, gate: str, seconds: float = 60) -> str:
    """Create the file ``started``, then wait (up to ``seconds``) until ``gate`` exists."""
    Path(started).write_text("started")
    deadline = time.monotonic() + seconds
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "opened"


@jobs_task(
    concurrency_key=lambda account, **_: f"account:{account}",
    key_concurrency=1,
    concurrency=2,
)
def sync_account(account: int, full: bool = False) -> int:
    """One running job per account, at most two in all."""
    return account
