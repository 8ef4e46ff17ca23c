"""The job being run in this context, and the progress its task reports.

The runner makes a job current while its task runs (``running``), handing over
how to record a report: ``jobs.lifecycle.report_progress``, a fenced UPDATE.
The registry's layer sits below the lifecycle, so this module never imports it;
a task only sees ``report_progress`` and ``current``.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async

if TYPE_CHECKING:
    from jobs.models import Job

# Records one report: (*, job, worker_id, percent, message) -> whether worker_id still holds job.
Recorder = Callable[..., bool]

_current: ContextVar[tuple["Job", str, Recorder] | None] = ContextVar("jobs_current", default=None)


@contextmanager
def running(job: "Job", worker_id: str, *, record_progress: Recorder) -> Iterator[None]:
    """Make ``job`` (held by ``worker_id``) the current job while the block runs.

    Its progress reports go to ``record_progress``.
    """
    token = _current.set((job, worker_id, record_progress))
    try:
        yield
    finally:
        _current.reset(token)


def current() -> tuple["Job", str] | None:
    """Return ``(job, worker_id)`` of the job running in this context, or ``None``."""
    held = _current.get()
    return None if held is None else (held[0], held[1])


def report_progress(percent: float, message: str = "") -> bool:
    """Record the running job's progress (0..100) and an optional message.

    Return ``False`` when no job is running in this context or its holder lost
    it (cancelled, recovered); the task may then stop early. Raises
    ``ValueError`` for a percentage outside 0..100.
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"progress must be between 0 and 100, not {percent!r}")
    held = _current.get()
    if held is None:
        return False
    job, worker_id, record = held
    return record(job=job, worker_id=worker_id, percent=round(percent), message=message)


async def areport_progress(percent: float, message: str = "") -> bool:
    """Async variant of ``report_progress`` for ``async def`` tasks."""
    return await sync_to_async(report_progress)(percent, message)
