"""The task registry: names a job may run, mapped to callables, and the built-in tasks.

Register a task with the decorator::

    from jobs.tasks import register

    @register("resize_image", queue="media", max_attempts=5)
    def resize_image(payload):
        ...

A task receives the job's payload and returns a JSON-serialisable result. Raise
``jobs.exceptions.PermanentFailure`` to fail the job without further retries.
Only registered names ever run: a job's ``task`` is looked up here, never imported.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs.conf import conf
from jobs.exceptions import UnknownTask


@dataclass(frozen=True)
class TaskSpec:
    name: str
    func: Callable[[Any], Any]
    description: str = ""
    queue: str = "default"
    priority: int = 0
    max_attempts: int | None = None
    timeout: float | None = None

    def __call__(self, payload: Any) -> Any:
        return self.func(payload)


_registry: dict[str, TaskSpec] = {}


def register(
    name: str | None = None,
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int | None = None,
    timeout: float | None = None,
    description: str | None = None,
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register the decorated callable as a task (named after the function by default)."""

    def decorator(func: Callable[[Any], Any]) -> Callable[[Any], Any]:
        task_name = name or func.__name__
        _registry[task_name] = TaskSpec(
            name=task_name,
            func=func,
            description=description or (func.__doc__ or "").strip().split("\n")[0],
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
        )
        return func

    return decorator


def get(name: str) -> TaskSpec:
    """Return the registered task ``name``. Raises ``UnknownTask``."""
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry))
        raise UnknownTask(f"unknown task {name!r}; registered tasks: {known}") from None


def registered() -> dict[str, TaskSpec]:
    """Return all registered tasks by name."""
    return dict(_registry)


@register("simulate")
def simulate(payload: Any) -> dict[str, Any]:
    """Sleep JOBS_SIMULATE_SECONDS, then describe the payload (the prototype's task)."""
    time.sleep(conf.SIMULATE_SECONDS)
    return {"processed": payload, "length": len(str(payload)) if payload is not None else 0}


@register("noop")
def noop(payload: Any) -> None:
    """Return at once; used by benchmarks."""
    return None


@register("echo")
def echo(payload: Any) -> Any:
    """Return the payload unchanged."""
    return payload


@register("jobs.purge", max_attempts=1)
def purge(payload: Any) -> dict[str, int]:
    """Delete finished jobs past their retention age (the built-in ``jobs.purge`` schedule)."""
    from jobs import retention

    return retention.purge()
