"""Waiting out a database outage: ``DatabaseRetry`` counts a worker's consecutive
database errors and waits, with backoff, before the loop tries again.

Used by the worker loop only (``jobs.worker.loop``); the connection settings of
worker processes are ``jobs.worker.connections``. Imports the lifecycle (for its
backoff policy), so unlike ``connections`` it must not be imported before Django
is set up.
"""

import logging
import threading
import time

from django.db import DatabaseError, close_old_connections

from jobs import lifecycle

logger = logging.getLogger(__name__)


# Waiting for an unreachable database: seconds before the first retry, and at most.
DB_RETRY_BASE = 0.5
DB_RETRY_MAX = 10.0


class DatabaseRetry:
    """A worker's consecutive database failures, and the wait before it tries again.

    The worker loop calls ``failed`` after a pass (or a registration, or a step of
    stopping) that hit a database error, and ``succeeded`` after one that did not:
    the wait grows with the failures, with jitter, up to ``DB_RETRY_MAX`` seconds,
    and a stop request ends it early.
    """

    def __init__(self, worker_id: str, stop: threading.Event) -> None:
        self.worker_id = worker_id
        self.failures = 0
        self._stop = stop

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, exc: DatabaseError, *, until: float | None = None) -> None:
        """Log the error, drop a broken connection, and wait with backoff (never past
        the ``time.monotonic()`` value ``until``) before the caller tries again on a
        new connection."""
        self.failures += 1
        delay = lifecycle.backoff(self.failures, base=DB_RETRY_BASE, cap=DB_RETRY_MAX)
        if until is not None:
            delay = max(0.0, min(delay, until - time.monotonic()))
        logger.warning(
            "worker=%s database unavailable, retry=%s in %.1fs: %s",
            self.worker_id,
            self.failures,
            delay,
            exc,
        )
        close_old_connections()
        if self._stop.is_set():
            time.sleep(delay)  # stopping already: the event would not wait
        else:
            self._stop.wait(delay)
