"""The built-in ``jobs.purge`` task, which the built-in ``jobs.purge`` schedule runs."""

from typing import Any

from jobs import retention
from jobs.tasks import register


@register("jobs.purge", max_attempts=1)
def purge(payload: Any) -> dict[str, int]:
    """Delete finished jobs past their retention age (the built-in ``jobs.purge`` schedule)."""
    return retention.purge()
