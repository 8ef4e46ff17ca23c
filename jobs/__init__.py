"""jobqueue's Django app, and its public Python API::

    from jobs import enqueue, enqueue_many, send_email, http_request, get_job, cancel, retry
    from jobs import pause_queue, resume_queue, queue_state
    from jobs import enqueue_workflow, chain, group, workflow_state, cancel_workflow

The functions live in ``jobs.shortcuts`` and are imported on first use (PEP 562):
Django imports this package while apps are loading, before the models can be,
so importing it must not import them.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "cancel",
    "cancel_workflow",
    "chain",
    "enqueue",
    "enqueue_many",
    "enqueue_workflow",
    "get_job",
    "group",
    "http_request",
    "pause_queue",
    "queue_state",
    "resume_queue",
    "retry",
    "send_email",
    "workflow_state",
]

if TYPE_CHECKING:
    from jobs.shortcuts import (
        cancel,
        cancel_workflow,
        chain,
        enqueue,
        enqueue_many,
        enqueue_workflow,
        get_job,
        group,
        http_request,
        pause_queue,
        queue_state,
        resume_queue,
        retry,
        send_email,
        workflow_state,
    )


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module("jobs.shortcuts"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
