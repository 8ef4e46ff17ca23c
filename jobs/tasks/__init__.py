"""Tasks: what a job may run. The registry, the job running now, and the built-in tasks.

Register a task with the decorator::

    from jobs.tasks import register, report_progress

    @register("resize_image", queue="media", max_attempts=5, schema=ResizeSerializer)
    def resize_image(payload):
        report_progress(50, "half way")
        ...

A task receives the job's payload and returns a JSON-serialisable result. Raise
``jobs.exceptions.PermanentFailure`` to fail the job without further retries;
any other exception is retried while attempts remain.

Owns the registry (``registry``: ``register``, ``get``, ``registered``, the
resolvers of names not registered, and the job running in this context with its
progress reports) and the built-in tasks (``builtin``, registered by the app at
start-up). Sits below ``jobs.lifecycle``, which looks tasks up here: it must not
import ``jobs.lifecycle`` or anything above it (the runner hands the lifecycle's
progress writer to ``registry.running``), and nothing here but ``builtin``
touches ``jobs.models``.
"""

from jobs.tasks.registry import (
    Hook,
    TaskSpec,
    add_resolver,
    areport_progress,
    check_limit,
    concurrency_limits,
    current,
    declare_concurrency,
    external_names,
    get,
    parent_results,
    register,
    register_external,
    registered,
    report_progress,
    running,
)

__all__ = [
    "Hook",
    "TaskSpec",
    "add_resolver",
    "areport_progress",
    "check_limit",
    "concurrency_limits",
    "current",
    "declare_concurrency",
    "external_names",
    "get",
    "parent_results",
    "register",
    "register_external",
    "registered",
    "report_progress",
    "running",
]
