"""A ``django.tasks`` backend that stores tasks as jobs: ``jobs.backends.JobsBackend``.

Configure it in ``TASKS``; ``@task`` functions then enqueue ``Job`` rows (task =
the Task's module path, payload = ``{"args", "kwargs", "backend"}``), which
``manage.py runworker`` runs like any other job, and ``get_result()`` reads back
as a ``TaskResult`` (see ``jobs.backends.task_results`` for the mapping). It reads
the jobs of registered tasks too (``send_email``, queued by the API or
``jobs.enqueue``): their ``Task`` is the registered function, their one argument
the payload.

``task`` declares a task with the queue's own options (``max_attempts``,
``timeout``) without tying the module to this backend: the options are kept here,
by the task's import path, and every other backend (``ImmediateBackend``,
``DummyBackend`` in tests) sees a plain ``django.tasks`` task.

A worker never imports an arbitrary dotted path from a row: ``resolve`` accepts
only a path whose module is already imported or belongs to an installed app,
and that names a ``django.tasks.Task`` declared on a ``JobsBackend``.

This module must not import models at import time: ``@task`` instantiates the
backend while apps may still be loading. Hence the function-level imports of
``jobs.lifecycle``, ``task_results`` and ``jobs.models`` below: start-up order,
not cycles (``task_results`` never imports this module).
"""

import logging
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core import checks
from django.db import transaction
from django.tasks import Task, TaskContext, TaskResult, task_backends
from django.tasks import task as django_task
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils.json import normalize_json

from jobs import tasks
from jobs.exceptions import UnknownTask

if TYPE_CHECKING:
    from jobs.models import Job

logger = logging.getLogger(__name__)

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
MAX_TASK_PATH = 200  # Job.task's length


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """The queue's own options for a task."""

    max_attempts: int | None = None  # None: the backend's OPTIONS["MAX_ATTEMPTS"] (default 1)
    timeout: float | None = None  # seconds; None: no limit
    # Flow control: a job's concurrency key from the task's arguments, how many jobs of
    # one key may be processing at once, how many of the task's jobs in all.
    concurrency_key: Callable[..., str | None] | None = None
    key_concurrency: int | None = None
    concurrency: int | None = None


_options: dict[str, TaskOptions] = {}  # by the task's import path (Task.module_path)


def _check(options: TaskOptions) -> None:
    if options.max_attempts is not None and not 1 <= options.max_attempts <= 100:
        raise InvalidTask("max_attempts must be between 1 and 100.")
    if options.timeout is not None and options.timeout <= 0:
        raise InvalidTask("timeout must be a positive number of seconds.")
    if options.concurrency_key is not None and not callable(options.concurrency_key):
        raise InvalidTask("concurrency_key must be a callable taking the task's arguments.")
    for name in ("key_concurrency", "concurrency"):
        try:
            tasks.check_limit(name, getattr(options, name))
        except ValueError as exc:
            raise InvalidTask(str(exc)) from None


def task(
    function: Callable[..., Any] | None = None,
    *,
    max_attempts: int | None = None,
    timeout: float | None = None,
    concurrency_key: Callable[..., str | None] | None = None,
    key_concurrency: int | None = None,
    concurrency: int | None = None,
    **kwargs: Any,
) -> Any:
    """Declare a ``django.tasks`` task, with jobqueue's own options.

    Use it as ``django.tasks.task`` (``@task``, ``@task(priority=..., queue_name=...,
    backend=..., takes_context=...)``): those arguments go to Django's decorator,
    which builds the task for whichever backend is configured. jobqueue's options are
    kept by the task's import path and read by ``JobsBackend``; other backends never
    see them, so the module imports and runs under any backend:

    - ``max_attempts``, ``timeout`` (seconds);
    - ``concurrency_key``: called with the task's arguments (as ``enqueue`` got them),
      returns the job's concurrency key or None; ``key_concurrency``: at most this many
      jobs of one key processing at once (default 1; a queue's setting wins);
    - ``concurrency``: at most this many of the task's jobs processing at once.

    Raises ``InvalidTask`` for an option out of range.
    """
    options = TaskOptions(
        max_attempts=max_attempts,
        timeout=timeout,
        concurrency_key=concurrency_key,
        key_concurrency=key_concurrency,
        concurrency=concurrency,
    )
    _check(options)

    def wrapper(func: Callable[..., Any]) -> Task:
        _options[f"{func.__module__}.{func.__qualname__}"] = options
        return django_task(**kwargs)(func)

    return wrapper(function) if function is not None else wrapper


def options_of(task: Task) -> TaskOptions:
    """Return ``task``'s queue options: given to ``jobs.backends.task``, or as ``JobTask``
    fields to ``django.tasks.task`` while this backend is configured."""
    declared = _options.get(task.module_path, TaskOptions())
    given = {
        name: getattr(task, name)
        for name in TaskOptions.__dataclass_fields__
        if getattr(task, name, None) is not None
    }
    return replace(declared, **given)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTask(Task):
    """A ``Task`` that also takes the queue's options from ``django.tasks.task``.

    Only while a ``JobsBackend`` is configured: other backends refuse these
    arguments. ``jobs.backends.task`` takes them under any backend.
    """

    max_attempts: int | None = None  # None: the backend's OPTIONS["MAX_ATTEMPTS"] (default 1)
    timeout: float | None = None  # seconds; None: no limit
    concurrency_key: Callable[..., str | None] | None = None
    key_concurrency: int | None = None
    concurrency: int | None = None


class JobsBackend(BaseTaskBackend):
    """Run ``django.tasks`` tasks as jobs: stored in the database, run by ``runworker``."""

    task_class = JobTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        options = options_of(task)
        _check(options)
        if len(task.module_path) > MAX_TASK_PATH:
            raise InvalidTask(f"Task path must be at most {MAX_TASK_PATH} characters.")
        if options.concurrency:  # every worker must know it before claiming (flow.free_jobs)
            tasks.declare_concurrency(task.module_path, options.concurrency)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        # Not at import time: they import the models (see above).
        from jobs import lifecycle
        from jobs.backends import task_results

        self.validate_task(task)
        payload = {
            "args": normalize_json(list(args)),
            "kwargs": normalize_json(dict(kwargs)),
            "backend": self.alias,
        }
        try:
            job, _ = lifecycle.enqueue(
                task=task.module_path,
                payload=payload,
                queue=task.queue_name,
                priority=task.priority,
                run_after=task.run_after,
                max_attempts=self._max_attempts(task),
                timeout=options_of(task).timeout,
            )
        except UnknownTask:
            raise InvalidTask(
                f"Task {task.module_path!r} cannot be found by workers: define it at module "
                "level in an installed app (or a JOBS_TASK_MODULES module), on a JobsBackend."
            ) from None
        result = task_results.build(job, task=task, history=[])
        task_enqueued.send(type(self), task_result=result)
        return result

    def _max_attempts(self, task: Task) -> int:
        return options_of(task).max_attempts or int(self.options.get("MAX_ATTEMPTS", 1))

    def get_result(self, result_id: str) -> TaskResult:
        # Not at import time: the models (see above).
        from jobs.backends import task_results
        from jobs.models import Job

        try:
            pk = uuid.UUID(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(result_id) from None
        job = Job.objects.prefetch_related("history").filter(pk=pk).first()
        if job is None:
            raise TaskResultDoesNotExist(result_id)
        task = load_task(job.task)
        if task is not None:
            return task_results.build(job, task=task)
        # A job of a registered task (send_email, ...), queued by the API or jobs.enqueue.
        return task_results.build(job, task=self._registered_task(job), registered=True)

    def _registered_task(self, job: "Job") -> Task:
        """``job``'s registered task as a ``Task`` of this backend, whose one argument is
        the payload. Raises ``TaskResultDoesNotExist`` when there is none."""
        spec = tasks.registered().get(job.task)
        try:
            if spec is None:
                raise InvalidTask("it is not registered")
            return self.task_class(
                func=spec.func,
                backend=self.alias,
                priority=job.priority,
                queue_name=job.queue,
                run_after=job.run_after,
            )
        except InvalidTask as exc:
            raise TaskResultDoesNotExist(
                f"{job.pk}: its task {job.task!r} is neither a django.tasks task on a "
                f"JobsBackend nor a registered task a Task can stand for ({exc}); read the "
                "job itself with jobs.get_job()"
            ) from None

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        if apps.is_installed("jobs"):
            return []
        return [
            checks.Error(
                f"{type(self).__name__} needs 'jobs' in INSTALLED_APPS.",
                obj=f"TASKS[{self.alias!r}]",
                id="jobs.E001",
            )
        ]


def enqueue_on_commit(task: Task, *args: Any, using: str | None = None, **kwargs: Any) -> None:
    """Enqueue ``task`` once the current transaction commits (at once outside one).

    With ``JobsBackend`` on the same database a plain ``enqueue()`` inside
    ``transaction.atomic()`` already commits or rolls back with the block; this
    helper is for backends outside the database, or tasks that must not even be
    visible before the commit (the ``ImmediateBackend`` runs them at once).
    """
    transaction.on_commit(partial(task.enqueue, *args, **kwargs), using=using)


# -- resolving a stored path, safely ------------------------------------------------------


def _importable(module_name: str) -> bool:
    if module_name in sys.modules:
        return True
    return any(
        module_name == app.name or module_name.startswith(app.name + ".")
        for app in apps.get_app_configs()
    )


def load_task(path: str) -> Task | None:
    """Return the ``Task`` at ``path`` if it is a task on a ``JobsBackend``, else ``None``.

    Only modules already imported or inside an installed app are imported.
    """
    if not isinstance(path, str) or not _DOTTED.match(path):
        return None
    module_name, _, attr = path.rpartition(".")
    if not _importable(module_name):
        return None
    try:
        obj = getattr(import_module(module_name), attr, None)
    except Exception:
        logger.warning("task=%s module import failed", path, exc_info=True)
        return None
    if not isinstance(obj, Task) or obj.module_path != path:
        return None
    try:
        backend = task_backends[obj.backend]
    except InvalidTaskBackend:
        return None
    return obj if isinstance(backend, JobsBackend) else None


def resolve(path: str) -> tasks.TaskSpec | None:
    """Return a runnable spec for the ``django.tasks`` task at ``path``, or ``None``."""
    task = load_task(path)
    if task is None:
        return None
    return tasks.TaskSpec(
        name=path,
        func=partial(_call, task),
        description=(task.func.__doc__ or "").strip().split("\n")[0],
        queue=task.queue_name,
        priority=task.priority,
        max_attempts=options_of(task).max_attempts,
        timeout=options_of(task).timeout,
        concurrency_key=_key_of(task),
        key_concurrency=options_of(task).key_concurrency,
        concurrency=options_of(task).concurrency,
        started=partial(_send, task_started, task),
        finished=partial(_send, task_finished, task),
    )


def _key_of(task: Task) -> Callable[[Any], str | None] | None:
    """``task``'s ``concurrency_key`` as the registry calls it: with a job's payload."""
    derive = options_of(task).concurrency_key
    if derive is None:
        return None

    def key(payload: Any) -> str | None:
        from jobs.backends import task_results  # not at import time: it imports the models

        args, kwargs = task_results.split_payload(payload)
        return derive(*args, **kwargs)

    return key


def _call(task: Task, payload: Any) -> Any:
    """Run ``task`` for the current job, with a ``TaskContext`` if it takes one."""
    from jobs.backends import task_results  # not at import time: it imports the models

    args, kwargs = task_results.split_payload(payload)
    if not task.takes_context:
        return normalize_json(task.call(*args, **kwargs))
    held = tasks.current()
    if held is None:
        raise RuntimeError("a task that takes context runs only through jobs.runner")
    context = TaskContext(task_result=task_results.build(held[0], task=task))
    return normalize_json(task.call(context, *args, **kwargs))


def _send(signal: Any, task: Task, job: "Job") -> None:
    # Not at import time: the models (see above).
    from jobs.backends import task_results
    from jobs.models import Job, Status

    if signal is task_finished and job.status != Status.DONE:
        # A failure's details (error, archived attempt) are only in the database.
        job = Job.objects.prefetch_related("history").filter(pk=job.pk).first()
        if job is None:
            return
    result = task_results.build(job, task=task)
    signal.send(type(task_backends[result.backend]), task_result=result)
