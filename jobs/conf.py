"""Queue settings: each ``JOBS_*`` value is read here, from Django settings or the environment."""

import os
from typing import Any

from django.conf import settings


def _get(name: str, default: Any, cast: type = str) -> Any:
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    return default if raw is None or raw == "" else cast(raw)


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
    def TASK_MODULES(self) -> list[str]:
        """Extra modules imported at start-up to register tasks (comma-separated in env)."""
        value = _get("JOBS_TASK_MODULES", "")
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return list(value)

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
        """Most jobs one bulk operation (an admin action) may touch."""
        return _get("JOBS_MAX_BULK", 500, int)

    @property
    def WRITE_RATE(self) -> str | None:
        """Writes per user through the API, as DRF rates it ("600/minute"); empty: no limit."""
        value = _get("JOBS_WRITE_RATE", "600/minute")
        return value if value and str(value).lower() != "none" else None


conf = _Conf()
