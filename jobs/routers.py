"""Reads that may come from a replica: the admin's job list and dashboard, ``/api/stats`` and
``/metrics``.

``ReadReplicaRouter`` (in ``DATABASE_ROUTERS``) sends a read to the alias named by
``JOBS_READ_REPLICA`` only inside ``replica_reads()``, which those views enter for GET
requests, and never inside a transaction. Everything else, every write and every read of
the lifecycle, the worker, the job page and the API's job endpoints, stays on ``default``:
a replica's lag may show an operator a list a moment old, never make a job run twice or
an edit act on a stale row.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connections
from django.template.response import TemplateResponse

from jobs.conf import conf

_replica = ContextVar("jobs_replica_reads", default=False)


@contextmanager
def replica_reads() -> Iterator[None]:
    """Within this block, reads outside transactions may go to ``JOBS_READ_REPLICA``."""
    token = _replica.set(True)
    try:
        yield
    finally:
        _replica.reset(token)


def reads_from_replica(view: Callable[..., Any]) -> Callable[..., Any]:
    """Run a view's GET and HEAD requests inside ``replica_reads()``; others as they are.

    A Django ``TemplateResponse`` is rendered inside too, since it queries as it renders:
    so it is rendered before any ``process_template_response`` middleware runs (none of
    this project's does; such middleware sees a rendered response)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        request = next(a for a in args if hasattr(a, "method"))
        if request.method not in ("GET", "HEAD"):
            return view(*args, **kwargs)
        with replica_reads():
            response = view(*args, **kwargs)
            if isinstance(response, TemplateResponse):  # Django's; DRF's data is read already
                response.render()
            return response

    return wrapped


class ReadReplicaRouter:
    """Route the jobs app's reads that ``replica_reads()`` allows to ``JOBS_READ_REPLICA``;
    every write of the jobs app to ``default``; other apps' models are left to other routers."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        alias = conf.READ_REPLICA
        if (
            alias
            and model._meta.app_label == "jobs"
            and _replica.get()
            and not connections[DEFAULT_DB_ALIAS].in_atomic_block
        ):
            return alias
        return None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        # Even for a row read from the replica (Django would write it back there).
        return DEFAULT_DB_ALIAS if model._meta.app_label == "jobs" else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        ours = {DEFAULT_DB_ALIAS, conf.READ_REPLICA}
        return True if {obj1._state.db, obj2._state.db} <= ours else None  # the same rows

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db == conf.READ_REPLICA else None  # a replica follows its primary


def check_replica_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """``JOBS_READ_REPLICA`` names a database alias, and the router is installed."""
    alias = conf.READ_REPLICA
    if not alias:
        return []
    if alias not in settings.DATABASES:
        return [
            checks.Error(
                f"JOBS_READ_REPLICA is {alias!r}, which is not a DATABASES alias.",
                hint="Add the replica to DATABASES, or unset JOBS_READ_REPLICA.",
                obj="settings.JOBS_READ_REPLICA",
                id="jobs.E002",
            )
        ]
    path = f"{ReadReplicaRouter.__module__}.{ReadReplicaRouter.__name__}"
    installed = [
        r if isinstance(r, str) else f"{type(r).__module__}.{type(r).__name__}"
        for r in settings.DATABASE_ROUTERS
    ]
    if path not in installed:
        return [
            checks.Warning(
                "JOBS_READ_REPLICA is set but the router that uses it is not installed: "
                "every read goes to the default database.",
                hint=f"Add {path!r} to DATABASE_ROUTERS.",
                obj="settings.DATABASE_ROUTERS",
                id="jobs.W002",
            )
        ]
    return []
