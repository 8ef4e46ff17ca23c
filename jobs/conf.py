"""Queue settings: each ``JOBS_*`` value is read here, from Django settings or the environment."""

import json
import os
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

EXTERNAL_TASK_OPTIONS = {
    "queue",
    "priority",
    "max_attempts",
    "timeout",
    "description",
    "payload_schema",
}


def _get(name: str, default: Any, cast: type = str) -> Any:
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(cast, "valid")
        raise ImproperlyConfigured(f"{name}={raw!r}: must be {kind}") from None


def _positive(name: str, value: Any) -> Any:
    if not value > 0:
        raise ImproperlyConfigured(f"{name}={value!r}: must be above 0")
    return value


def _bool(raw: str) -> bool:
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _list(name: str, default: list[Any]) -> list[Any]:
    """A list setting: a list in settings, or comma-separated in the environment."""
    value = _get(name, default)
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


class _Conf:
    """Attribute access re-reads settings, so ``override_settings`` works in tests."""

    @property
    def SIMULATE_SECONDS(self) -> float:
        return _get("JOBS_SIMULATE_SECONDS", 1.0, float)

    @property
    def MAX_ATTEMPTS(self) -> int:
        return _get("JOBS_MAX_ATTEMPTS", 3, int)

    @property
    def BACKOFF_BASE(self) -> float:
        """Seconds before the first retry (before jitter); doubles with each attempt."""
        return _get("JOBS_BACKOFF_BASE", 2.0, float)

    @property
    def BACKOFF_MAX(self) -> float:
        return _get("JOBS_BACKOFF_MAX", 600.0, float)

    @property
    def LEASE_SECONDS(self) -> float:
        return _get("JOBS_LEASE_SECONDS", 30.0, float)

    @property
    def POLL_INTERVAL(self) -> float:
        """Idle wait between polls: short on SQLite (a local file); on PostgreSQL
        LISTEN/NOTIFY wakes workers at once, so polling is only the safety net; MariaDB and
        MySQL have no notifications: a poll is one index probe over the network."""
        default = {"postgresql": 0.5, "mysql": 0.1}.get(connection.vendor, 0.05)
        return _get("JOBS_POLL_INTERVAL", default, float)

    @property
    def LISTEN_DATABASE_URL(self) -> str:
        """Where workers LISTEN for new jobs (PostgreSQL): empty, the default database's
        own settings; a ``postgres://`` URL straight to the server (when the default goes
        through a transaction pooler, which cannot hold a LISTEN); ``off``, poll only."""
        return _get("JOBS_LISTEN_DATABASE_URL", "")

    @property
    def READ_REPLICA(self) -> str:
        """Database alias of a read replica for the admin's job list and dashboard,
        ``/api/stats`` and ``/metrics`` (with ``jobs.routers.ReadReplicaRouter`` in
        ``DATABASE_ROUTERS``); empty, every read from ``default``."""
        return _get("JOBS_READ_REPLICA", "")

    @property
    def BATCH_SIZE(self) -> int:
        """The most jobs a worker claims per executor per round trip (``--batch``)."""
        return _positive("JOBS_BATCH_SIZE", _get("JOBS_BATCH_SIZE", 100, int))

    @property
    def HAND_BACK_AFTER(self) -> float:
        """Seconds a job runs before the jobs waiting behind it in its executor's
        hand go back to the queue; batches grow only while they finish within it."""
        return _positive("JOBS_HAND_BACK_AFTER", _get("JOBS_HAND_BACK_AFTER", 0.05, float))

    @property
    def TIMEOUT(self) -> float:
        """Default seconds a job may run before its executor is killed."""
        return _get("JOBS_TIMEOUT", 600.0, float)

    @property
    def SHUTDOWN_TIMEOUT(self) -> float:
        """Seconds a stopping worker waits for running jobs before requeueing them."""
        return _get("JOBS_SHUTDOWN_TIMEOUT", 30.0, float)

    @property
    def TASK_MODULES(self) -> list[str]:
        """Extra modules imported at start-up to register tasks (comma-separated in env)."""
        value = _get("JOBS_TASK_MODULES", "")
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return list(value)

    @property
    def EXTERNAL_TASKS(self) -> dict[str, dict[str, Any]]:
        """Tasks run by remote workers: ``{name: {queue, priority, max_attempts, timeout,
        description, payload_schema}}`` (a JSON object in the environment)."""
        value = _get("JOBS_EXTERNAL_TASKS", {})
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ImproperlyConfigured("JOBS_EXTERNAL_TASKS: must be a JSON object") from None
        if not isinstance(value, dict) or not all(
            isinstance(options, dict) for options in value.values()
        ):
            raise ImproperlyConfigured(
                "JOBS_EXTERNAL_TASKS: must map each task name to an object of its options"
            )
        for name, options in value.items():
            if unknown := set(options) - EXTERNAL_TASK_OPTIONS:
                raise ImproperlyConfigured(
                    f"JOBS_EXTERNAL_TASKS[{name!r}]: unknown options {sorted(unknown)}; "
                    f"known: {sorted(EXTERNAL_TASK_OPTIONS)}"
                )
        return value

    @property
    def WORKER_MAX_WAIT(self) -> float:
        """Longest long poll of ``POST /api/worker/claim``, in seconds (each holds a web thread)."""
        return _get("JOBS_WORKER_MAX_WAIT", 20.0, float)

    @property
    def HTTP_ALLOWED_HOSTS(self) -> list[str]:
        """Hosts ``http_request`` may call (``.example.com`` includes subdomains, ``*`` any)."""
        value = _get("JOBS_HTTP_ALLOWED_HOSTS", "")
        if isinstance(value, str):
            return [item.strip().lower() for item in value.split(",") if item.strip()]
        return [item.lower() for item in value]

    @property
    def HTTP_MAX_RESPONSE_BYTES(self) -> int:
        """Bytes of a response body ``http_request`` reads and keeps; the rest is cut off."""
        return _get("JOBS_HTTP_MAX_RESPONSE_BYTES", 65536, int)

    @property
    def HTTP_TIMEOUT(self) -> float:
        """Default seconds ``http_request`` waits to connect and for each read."""
        return _get("JOBS_HTTP_TIMEOUT", 10.0, float)

    @property
    def METRICS_ENABLED(self) -> bool:
        """Serve ``GET /metrics``; when off it answers 404."""
        return _get("JOBS_METRICS_ENABLED", True, _bool)

    @property
    def METRICS_TOKEN(self) -> str:
        """Bearer token ``GET /metrics`` requires; empty: no token needed."""
        return _get("JOBS_METRICS_TOKEN", "")

    @property
    def DOCS_LOGIN_REQUIRED(self) -> bool:
        """Serve ``/docs`` and ``/api/schema`` to signed-in users only; off: to anyone."""
        return _get("JOBS_DOCS_LOGIN_REQUIRED", False, _bool)

    @property
    def STATS_EXACT_LIMIT(self) -> int:
        """Finished jobs counted exactly per status; beyond it, stats estimate."""
        return _get("JOBS_STATS_EXACT_LIMIT", 10000, int)

    @property
    def RETAIN_DONE(self) -> timedelta | None:
        """Age after which done jobs are purged (``7d``, ``12h``, seconds; ``never``)."""
        return parse_age(_get("JOBS_RETAIN_DONE", "7d"))

    @property
    def RETAIN_FAILED(self) -> timedelta | None:
        return parse_age(_get("JOBS_RETAIN_FAILED", "30d"))

    @property
    def RETAIN_CANCELLED(self) -> timedelta | None:
        return parse_age(_get("JOBS_RETAIN_CANCELLED", "7d"))

    @property
    def RETAIN_DEAD_WORKERS(self) -> timedelta | None:
        """Age of the last heartbeat after which a dead worker's registry row is removed."""
        return parse_age(_get("JOBS_RETAIN_DEAD_WORKERS", "1d"))

    @property
    def PURGE_BATCH_SIZE(self) -> int:
        """Jobs deleted per DELETE, each batch in its own short transaction."""
        return _get("JOBS_PURGE_BATCH_SIZE", 1000, int)

    @property
    def PURGE_CRON(self) -> str:
        """Timetable of the built-in ``jobs.purge`` schedule; ``off`` creates none."""
        return _get("JOBS_PURGE_CRON", "*/15 * * * *")

    @property
    def SCHEDULE_CATCH_UP_MAX(self) -> int:
        """Most missed fire times a ``catch_up`` schedule replays at once."""
        return _get("JOBS_SCHEDULE_CATCH_UP_MAX", 100, int)

    @property
    def SCHEDULE_TICK_SECONDS(self) -> float:
        """Least time between two looks for due schedules in one worker process."""
        return _get("JOBS_SCHEDULE_TICK_SECONDS", 1.0, float)

    @property
    def MAX_PAYLOAD_BYTES(self) -> int:
        """Largest payload a job may carry, measured as compact UTF-8 JSON."""
        return _get("JOBS_MAX_PAYLOAD_BYTES", 256 * 1024, int)

    @property
    def MAX_PAGE_SIZE(self) -> int:
        """Largest ``page_size`` a list request may ask for."""
        return _get("JOBS_MAX_PAGE_SIZE", 1000, int)

    @property
    def MAX_BULK(self) -> int:
        """Most jobs one bulk operation may touch: a bulk create, an admin action."""
        return _get("JOBS_MAX_BULK", 1000, int)

    @property
    def API_BASIC_AUTH(self) -> bool:
        """Also accept HTTP Basic in the API, on HTTPS requests only."""
        return _get("JOBS_API_BASIC_AUTH", False, _bool)

    @property
    def API_AUTHENTICATION_CLASSES(self) -> list[Any]:
        """How the API knows the caller: DRF tokens first (so anonymous calls get a 401
        with ``WWW-Authenticate``), then sessions, then Basic over HTTPS if enabled."""
        default = [
            "jobs.api.authentication.TokenAuthentication",
            "rest_framework.authentication.SessionAuthentication",
        ]
        if self.API_BASIC_AUTH:
            default.append("jobs.api.authentication.TLSBasicAuthentication")
        return _list("JOBS_API_AUTHENTICATION_CLASSES", default)

    @property
    def API_PERMISSION_CLASSES(self) -> list[Any]:
        """Who may do what: Django model permissions per action (jobs/api/permissions.py)."""
        return _list("JOBS_API_PERMISSION_CLASSES", ["jobs.api.permissions.ModelPermissions"])

    @property
    def API_THROTTLE_CLASSES(self) -> list[Any]:
        return _list("JOBS_API_THROTTLE_CLASSES", ["jobs.api.throttling.WriteRateThrottle"])

    @property
    def API_PARSER_CLASSES(self) -> list[Any]:
        """Request bodies: JSON only, malformed JSON a 400."""
        return _list("JOBS_API_PARSER_CLASSES", ["jobs.api.parsers.JSONParser"])

    @property
    def API_RENDERER_CLASSES(self) -> list[Any]:
        return _list(
            "JOBS_API_RENDERER_CLASSES",
            [
                "rest_framework.renderers.JSONRenderer",
                "rest_framework.renderers.BrowsableAPIRenderer",
            ],
        )

    @property
    def API_FILTER_BACKENDS(self) -> list[Any]:
        return _list(
            "JOBS_API_FILTER_BACKENDS",
            [
                "django_filters.rest_framework.DjangoFilterBackend",
                "rest_framework.filters.OrderingFilter",
            ],
        )

    @property
    def API_PAGINATION_CLASS(self) -> Any:
        """Pages of a list (empty or ``None``: no pages, the whole list at once)."""
        return _get("JOBS_API_PAGINATION_CLASS", "jobs.api.pagination.LinkHeaderCursorPagination")

    @property
    def API_PAGE_SIZE(self) -> int:
        """Items per page of a list when the request names no ``page_size``."""
        return _get("JOBS_API_PAGE_SIZE", 100, int)

    @property
    def API_EXCEPTION_HANDLER(self) -> Any:
        """Turns exceptions into answers: one JSON error shape (jobs/api/errors.py)."""
        return _get("JOBS_API_EXCEPTION_HANDLER", "jobs.api.errors.exception_handler")

    @property
    def QUEUES(self) -> dict[str, dict[str, Any]]:
        """Flow control per queue: ``{"mail": {"concurrency": 5, "rate": "10/s",
        "key_concurrency": 1, "key_rate": "1/s"}}`` (values the admin stores for a queue
        win; see README)."""
        return parse_queues(_get("JOBS_QUEUES", {}))

    @property
    def WRITE_RATE(self) -> str | None:
        """Writes per user through the API, as DRF rates it ("600/minute"); empty: no limit."""
        value = _get("JOBS_WRITE_RATE", "600/minute")
        return value if value and str(value).lower() != "none" else None


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(value: Any) -> timedelta | None:
    """Turn ``7d``, ``12h``, ``30m``, ``45s``, a number of seconds or a timedelta into a
    timedelta; ``never`` (or None) means keep forever. Raises ``ValueError``."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if str(value).strip().lower() == "never":
        return None
    match = _AGE.match(str(value).lower())
    if not match:
        raise ValueError(f"{value!r} is not an age: use e.g. 7d, 12h, 30m, 45s or never")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


QUEUE_LIMITS = ("concurrency", "key_concurrency", "rate", "key_rate")
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([smhd])\s*$")


def parse_rate(value: str) -> tuple[int, float]:
    """Turn ``10/s``, ``1000/h``, ``5/30s`` into ``(starts, period in seconds)``.

    Raises ``ValueError``.
    """
    match = _RATE.match(str(value).lower())
    if not match or int(match[1]) < 1 or (match[2] and float(match[2]) <= 0):
        raise ValueError(f"{value!r} is not a rate: use e.g. 10/s, 1000/h or 5/30s")
    return int(match[1]), float(match[2] or 1) * _UNITS[match[3]]


def parse_queues(value: Any) -> dict[str, dict[str, Any]]:
    """Check ``JOBS_QUEUES``; raise ``ImproperlyConfigured`` naming what is wrong."""
    if isinstance(value, str):  # from the environment: JSON
        try:
            value = json.loads(value or "{}")
        except ValueError:
            raise ImproperlyConfigured(f"JOBS_QUEUES={value!r}: must be a JSON object") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured("JOBS_QUEUES must map queue names to their limits")
    for name, limits in value.items():
        where = f"JOBS_QUEUES[{name!r}]"
        if not isinstance(limits, dict):
            raise ImproperlyConfigured(f"{where} must be a dict of {', '.join(QUEUE_LIMITS)}")
        for key, limit in limits.items():
            if key not in QUEUE_LIMITS:
                raise ImproperlyConfigured(
                    f"{where}: unknown limit {key!r} (use {', '.join(QUEUE_LIMITS)})"
                )
            if key in ("rate", "key_rate"):
                try:
                    parse_rate(limit)
                except ValueError as exc:
                    raise ImproperlyConfigured(f"{where}[{key!r}]: {exc}") from None
            elif isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ImproperlyConfigured(f"{where}[{key!r}]={limit!r}: must be an integer >= 1")
    return value


conf = _Conf()
