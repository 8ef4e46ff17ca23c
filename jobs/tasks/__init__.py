"""Tasks: the registry of what a job may run, the job running now, and the built-in tasks.

Register a task with the decorator::

    from jobs.tasks import register

    @register("resize_image", queue="media", max_attempts=5, schema=ResizeSerializer)
    def resize_image(payload):
        ...
"""

from jobs.tasks.registry import (
    Hook,
    TaskSpec,
    areport_progress,
    current,
    get,
    register,
    registered,
    report_progress,
    running,
)

__all__ = [
    "Hook",
    "TaskSpec",
    "areport_progress",
    "current",
    "get",
    "register",
    "registered",
    "report_progress",
    "running",
]
