"""The task registry: names a job may run, mapped to callables and their options.

``register`` adds a task (see ``jobs.tasks``); ``get`` looks a name up when a
job is created and when it runs. A task receives the job's payload and returns
a JSON-serialisable result. ``schema`` (a DRF serializer class or a JSON Schema
dict) is checked when a job is created, so a bad payload is refused before it
is queued.

Only registered names ever run: a job's ``task`` is looked up here, never
imported. The one exception is a ``django.tasks`` task enqueued through
``jobs.backends.JobsBackend``: ``get`` asks the resolvers added with
``add_resolver`` for names it does not know, and the app adds the backend's
(``jobs.backends.backend.resolve``, with its own strict rules) at start-up.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.exceptions import InvalidPayload, UnknownTask

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

    def __call__(self, payload: Any) -> Any:
        return self.func(payload)

    def validate_payload(self, payload: Any) -> None:
        """Check ``payload`` against the task's schema. Raises ``InvalidPayload``."""
        if self.schema is None:
            return
        if isinstance(self.schema, dict):
            _validate_json_schema(self.schema, payload)
            return
        serializer = self.schema(data=payload)
        if not serializer.is_valid():
            raise InvalidPayload(serializer.errors)


def _validate_json_schema(schema: dict[str, Any], payload: Any) -> None:
    import jsonschema  # only tasks with a JSON Schema need it: not loaded at start-up

    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = {}
    for error in validator.iter_errors(payload):
        where = ".".join(str(part) for part in error.absolute_path) or "payload"
        errors.setdefault(where, []).append(error.message)
    if errors:
        raise InvalidPayload(errors)


_registry: dict[str, TaskSpec] = {}
Resolver = Callable[[str], TaskSpec | None]
_resolvers: list[Resolver] = []


def register(
    name: str | None = None,
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int | None = None,
    timeout: float | None = None,
    description: str | None = None,
    schema: Any = None,
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register the decorated callable as a task (named after the function by default)."""
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
        )
        return func

    return decorator


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
