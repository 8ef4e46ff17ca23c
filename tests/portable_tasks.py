"""``django.tasks`` tasks declared with ``jobs.backends.task``: they import under any backend."""

from jobs.backends import task


@task(max_attempts=4, timeout=5)
def double(n: int) -> int:
    return 2 * n
