"""Queue settings: each ``JOBS_*`` value is read here, from Django settings or the environment."""

import os
from typing import Any

from django.conf import settings


def _get(name: str, default: Any, cast: type = str) -> Any:
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    return default if raw is None or raw == "" else cast(raw)


def _bool(raw: str) -> bool:
    return raw.strip().lower() in {"1", "true", "yes", "on"}


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
        return _get("JOBS_POLL_INTERVAL", 0.5, float)

    @property
    def BATCH_SIZE(self) -> int:
        return _get("JOBS_BATCH_SIZE", 1, int)

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
    def STATS_EXACT_LIMIT(self) -> int:
        """Finished jobs counted exactly per status; beyond it, stats estimate."""
        return _get("JOBS_STATS_EXACT_LIMIT", 10000, int)


conf = _Conf()
