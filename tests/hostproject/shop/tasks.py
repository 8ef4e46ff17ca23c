"""The host project's tasks, declared as the README shows: they import and run under
JobsBackend, ImmediateBackend and DummyBackend alike."""

from django.tasks import TaskContext

from jobs.backends import task


@task(max_attempts=3, timeout=30)
def add(a: int, b: int) -> int:
    return a + b


@task(max_attempts=2)
def fail_once(context_file: str) -> str:
    """Fail the first time (the file counts attempts), succeed after."""
    with open(context_file, "a") as handle:
        handle.write("x")
    with open(context_file) as handle:
        if len(handle.read()) < 2:
            raise ConnectionError("first attempt fails")
    return "ok"


@task(takes_context=True)
def attempt(context: TaskContext) -> int:
    return context.attempt


@task
def explode() -> None:
    raise RuntimeError("boom")
