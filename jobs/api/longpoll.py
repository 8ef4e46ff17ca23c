"""Waiting for a due job inside a request: the long poll of ``POST /api/worker/claim``.

On PostgreSQL one thread per web process LISTENs on the queue's NOTIFY channel
(``jobs.notify.Listener``, its own connection) and wakes every waiting request at
once; the waiting requests share it, so a hundred long polls cost one
connection, not a hundred. Each woken request, and each at least every
``RECHECK`` seconds (a deferred job becomes due without a NOTIFY), checks with a
cheap read (``claimable(...).exists()``) before it claims. Elsewhere the waits
are bounded polls of the same read every ``JOBS_POLL_INTERVAL``.

A waiting request holds a web thread (gunicorn: ``GUNICORN_THREADS`` per process).
"""

import logging
import select
import threading
import time
from collections.abc import Sequence

from django.db import connection

from jobs.conf import conf
from jobs.models import Job
from jobs.notify import Listener

logger = logging.getLogger(__name__)

RECHECK = 1.0  # seconds between reads while waiting for a NOTIFY


class _Wakeups:
    """A process's one listening thread and the condition waiting requests sleep on."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.generation = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> bool:
        """Start the listening thread once per process; return whether NOTIFY wakes waits."""
        if connection.vendor != "postgresql":
            return False
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                listener = Listener()
                if not listener.enabled:
                    return False
                self._thread = threading.Thread(
                    target=self._listen, args=(listener,), name="jobs-longpoll", daemon=True
                )
                self._thread.start()
        return True

    def _listen(self, listener: Listener) -> None:
        while True:
            fd = listener.fileno()
            if fd is None:
                time.sleep(Listener.retry_interval)
                continue
            try:
                ready, _, _ = select.select([fd], [], [], 5.0)
            except (OSError, ValueError):
                listener.close()
                continue
            if ready and listener.drain():
                with self.changed:
                    self.generation += 1
                    self.changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Sleep until a NOTIFY after generation ``seen`` or ``timeout``; return the generation."""
        with self.changed:
            self.changed.wait_for(lambda: self.generation != seen, timeout=timeout)
            return self.generation


_wakeups = _Wakeups()


def wait_for_due(*, queues: Sequence[str] | None, tasks: Sequence[str], deadline: float) -> bool:
    """Wait until a job of ``tasks`` (in ``queues``) is due, or until ``deadline``
    (``time.monotonic()``); return whether one is."""
    notified = _wakeups.start()
    seen = _wakeups.generation
    due = Job.objects.claimable(queues=queues, tasks=tasks)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if notified:
            seen = _wakeups.wait(seen, min(left, RECHECK))
        else:
            time.sleep(min(left, conf.POLL_INTERVAL))
        if due.exists():
            return True
