"""The task registry: names a job may run, mapped to callables and their options.

Register a task with the decorator::

    from jobs.tasks import register

    @register("resize_image", queue="media", max_attempts=5, schema=ResizeSerializer)
    def resize_image(payload):
        ...

A task receives the job's payload and returns a JSON-serialisable result. Raise
``jobs.exceptions.PermanentFailure`` to fail the job without further retries;
any other exception is retried while attempts remain. ``schema`` (a DRF
serializer class or a JSON Schema dict) is checked when a job is created, so a
bad payload is refused before it is queued. A running task may call
``report_progress(percent, message)``.

An *external* task runs outside this project, in a worker speaking the HTTP
worker protocol (``/api/worker/...``) in any language. Declare it by name, with
its queue, defaults and payload schema but no function, with
``register_external`` or the ``JOBS_EXTERNAL_TASKS`` setting. The built-in
worker never claims it (``external_names``); only remote workers do.

Only registered names ever run: a job's ``task`` is looked up here, never
imported. The one exception is a ``django.tasks`` task enqueued through
``jobs.backends.JobsBackend``, which ``get`` resolves with the backend's own
strict rules (see ``jobs.backends.backend.resolve``): the app adds that
resolver at start-up (``add_resolver``), so this module never imports it.

The runner makes a job current while its task runs (``running``), handing over
how to record its progress reports: ``jobs.lifecycle.report_progress``, a fenced
UPDATE. The registry sits below the lifecycle and never imports it.
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured

from jobs.exceptions import InvalidPayload, PermanentFailure, UnknownTask

if TYPE_CHECKING:
    from jobs.models import Job

Hook = Callable[["Job"], None]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    func: Callable[[Any], Any]
    description: str = ""
    queue: str = "default"
    priority: int = 0
    max_attempts: int | None = None
    timeout: float | None = None
    schema: Any = None  # a DRF serializer class, a JSON Schema dict, or None
    started: Hook | None = None  # called before each attempt (django.tasks signals)
    finished: Hook | None = None  # called after each attempt's outcome is recorded
    external: bool = False  # run by a remote worker over HTTP, never by runworker
    # Flow control: a job's concurrency key from its payload (when the caller gives none),
    # and how many jobs of one key may be processing at once (the queue's setting wins).
    concurrency_key: Callable[[Any], str | None] | None = None
    key_concurrency: int | None = None
    concurrency: int | None = None  # at most this many of the task's jobs processing at once

    def __call__(self, payload: Any) -> Any:
        return self.func(payload)

    def validate_payload(self, payload: Any) -> None:
        """Check ``payload`` against the task's schema. Raises ``InvalidPayload``."""
        if self.schema is None:
            return
        if not isinstance(self.schema, dict):
            serializer = self.schema(data=payload)
            if not serializer.is_valid():
                raise InvalidPayload(serializer.errors)
        if (schema := self.json_schema()) is not None:
            _validate_json_schema(schema, payload)

    def json_schema(self) -> dict[str, Any] | None:
        """Return the payload's JSON Schema when it is exact, else ``None``.

        Exact: a JSON Schema dict, or a serializer declaring its own with a
        ``json_schema()`` classmethod; such a serializer's payloads must pass both.
        The API's OpenAPI document states these schemas as the payload rules.
        """
        if isinstance(self.schema, dict):
            return self.schema
        declared = getattr(self.schema, "json_schema", None)
        return declared() if declared is not None else None


def _validate_json_schema(schema: dict[str, Any], payload: Any) -> None:
    import jsonschema  # only tasks with a JSON Schema need it: not loaded at start-up

    validator = jsonschema.validators.validator_for(schema)(schema)
    errors: dict[str, list[str]] = {}
    for error in validator.iter_errors(payload):
        path = [str(part) for part in error.absolute_path]
        # Name the field a message is about, as a serializer does, not its parent object.
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            found = [(name, "This field is required.") for name in missing]
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            found = [(name, "Unknown field.") for name in error.instance if name not in known]
        else:
            found = [(None, error.message)]
        for name, message in found:
            where = ".".join([*path, name] if name else path) or "non_field_errors"
            if message not in errors.setdefault(where, []):
                errors[where].append(message)
    if errors:
        raise InvalidPayload(errors)


_registry: dict[str, TaskSpec] = {}
Resolver = Callable[[str], TaskSpec | None]
_resolvers: list[Resolver] = []
_declared_limits: dict[str, int] = {}  # django.tasks tasks' total limits (declare_concurrency)


def register(
    name: str | None = None,
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int | None = None,
    timeout: float | None = None,
    description: str | None = None,
    schema: Any = None,
    concurrency_key: Callable[[Any], str | None] | None = None,
    key_concurrency: int | None = None,
    concurrency: int | None = None,
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register the decorated callable as a task (named after the function by default).

    ``concurrency_key(payload)`` gives a job's concurrency key when its caller gives
    none; ``key_concurrency`` caps the jobs of one key processing at once (default 1);
    ``concurrency`` caps the task's jobs processing at once, whatever their queue or key.
    Raises ``ValueError`` for a limit below 1.
    """
    check_limit("key_concurrency", key_concurrency)
    check_limit("concurrency", concurrency)
    if isinstance(schema, dict):
        import jsonschema  # only tasks with a JSON Schema need it: not loaded at start-up

        jsonschema.validators.validator_for(schema).check_schema(schema)

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
            schema=schema,
            concurrency_key=concurrency_key,
            key_concurrency=key_concurrency,
            concurrency=concurrency,
        )
        return func

    return decorator


def check_limit(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is None or an integer >= 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name}={value!r}: must be an integer >= 1")


def register_external(
    name: str,
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int | None = None,
    timeout: float | None = None,
    description: str = "",
    schema: Any = None,
) -> TaskSpec:
    """Declare ``name`` as run by remote workers (no Python function here); return its spec.

    Its jobs are created and validated like any other; only a remote worker that
    names it in ``POST /api/worker/claim`` runs them.
    """
    known = _registry.get(name)
    if known is not None and not known.external:
        raise ImproperlyConfigured(
            f"task {name!r} is already a Python task here; an external task needs a name of its own"
        )
    if isinstance(schema, dict):
        import jsonschema  # only tasks with a JSON Schema need it: not loaded at start-up

        jsonschema.validators.validator_for(schema).check_schema(schema)
    spec = TaskSpec(
        name=name,
        func=functools.partial(_runs_elsewhere, name),
        description=description or "Run by remote workers (the HTTP worker protocol).",
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        schema=schema,
        external=True,
    )
    _registry[name] = spec
    return spec


def _runs_elsewhere(name: str, payload: Any) -> Any:
    # Only reached when an operator runs an external job here by hand (POST /run, "run now").
    raise PermanentFailure(f"task {name!r} is external: a remote worker runs it")


def concurrency_limits() -> dict[str, int]:
    """The tasks with a total concurrency limit (``concurrency``), by name: registered
    ones and ``django.tasks`` tasks declared with one (``declare_concurrency``)."""
    limits = {name: spec.concurrency for name, spec in _registry.items() if spec.concurrency}
    return _declared_limits | limits


def declare_concurrency(name: str, limit: int) -> None:
    """Note that task ``name`` (not registered here: a ``django.tasks`` task resolved on
    demand) runs at most ``limit`` jobs at once. Every process that imports its module
    knows it: ``jobs`` imports each app's ``tasks`` module at start-up."""
    check_limit("concurrency", limit)
    _declared_limits[name] = limit


def external_names() -> frozenset[str]:
    """Return the names of the external tasks (empty when none is declared)."""
    return frozenset(name for name, spec in _registry.items() if spec.external)


def get(name: str) -> TaskSpec:
    """Return the registered task ``name`` (or a ``django.tasks`` task). Raises ``UnknownTask``."""
    try:
        return _registry[name]
    except KeyError:
        pass
    for resolve in _resolvers:
        if (spec := resolve(name)) is not None:
            return spec
    known = ", ".join(sorted(_registry))
    raise UnknownTask(f"unknown task {name!r}; registered tasks: {known}")


def add_resolver(resolver: Resolver) -> None:
    """Let ``get`` ask ``resolver`` for a spec of a name not registered (once per resolver)."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def registered() -> dict[str, TaskSpec]:
    """Return all registered tasks by name."""
    return dict(_registry)


# -- the job being run, and its progress ---------------------------------------------------

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


def parent_results() -> list[dict[str, Any]]:
    """The outcomes of the running job's parents (a workflow's dependent), in the order
    its edges were declared: each a dict of ``id``, ``name``, ``status`` (``done``,
    ``failed``, ``cancelled`` or ``deleted``), ``result`` and ``error``. Empty when
    no job is running in this context or it has no parents."""
    held = _current.get()
    if held is None:
        return []
    return list(held[0].parent_results or [])


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
