"""The ``django.tasks`` backend: ``TASKS = {"default": {"BACKEND": "jobs.backends.JobsBackend"}}``.

Owns the backend and its task class (``backend``: ``JobsBackend``, ``JobTask``,
``enqueue_on_commit``, the ``task`` decorator with jobqueue's own options, and the
safe resolution of a stored task path) and the mapping of a job to a
``TaskResult`` (``task_results``). An adapter over
``jobs.lifecycle`` like ``jobs.api``; the app registers its resolver with the
task registry at start-up (``jobs.apps``), so nothing below imports this package.

Django instantiates the backend as soon as a ``@task`` is declared, possibly while
apps are still loading: this package must not import ``jobs.models`` (or anything
that does) at import time. It must not import ``jobs.api``, ``jobs.admin`` or
``jobs.worker``.
"""

from jobs.backends.backend import JobsBackend, JobTask, enqueue_on_commit, task

__all__ = ["JobTask", "JobsBackend", "enqueue_on_commit", "task"]
