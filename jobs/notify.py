"""Wake idle workers the moment a job is queued (PostgreSQL LISTEN/NOTIFY).

``notify`` runs ``pg_notify`` in the caller's transaction (``with_notify`` in
the very statement that inserts the jobs), so the signal is delivered exactly
when the new jobs become visible (at commit) and never for a rolled-back insert.
A ``Listener`` holds its own connection with ``LISTEN`` on the channel; the
worker waits on its socket alongside everything else. Polling
stays as the safety net: if the listening connection drops (a database restart),
the worker keeps polling and the listener reconnects and listens again.
On other databases both are no-ops.

Behind a transaction pooler (PgBouncer's ``pool_mode = transaction``) a LISTEN cannot
hold: ``JOBS_LISTEN_DATABASE_URL`` points the listener straight at the server (or
``off`` leaves polling alone). ``pg_notify`` itself is transaction-scoped and passes
through the pooler.
"""

import logging
import time
from collections.abc import Iterable
from typing import Any

from django.db import connection

from jobs.conf import conf

logger = logging.getLogger(__name__)

CHANNEL = "jobqueue"


def notify(queues: Iterable[str]) -> None:
    """Announce new jobs on ``queues`` (in the current transaction, if any), in one statement."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, queue) FROM unnest(%s::text[]) AS queue",
            [CHANNEL, sorted(set(queues))],
        )


def with_notify(insert: str, *, queue_column: str) -> str:
    """Return ``insert``, an INSERT of jobs, as one statement that also announces their queues.

    PostgreSQL only. The notification belongs to the statement's transaction, as
    ``notify``'s does: sent at its commit, never for a rollback.
    """
    return (
        f"WITH new AS ({insert} RETURNING {queue_column}) "  # noqa: S608
        f"SELECT pg_notify('{CHANNEL}', queue) "
        f"FROM (SELECT DISTINCT {queue_column} AS queue FROM new) AS queues"
    )


class Listener:
    """A dedicated connection that LISTENs for new jobs; reconnects after errors."""

    retry_interval = 1.0

    def __init__(self) -> None:
        self.url = conf.LISTEN_DATABASE_URL
        off = self.url.strip().lower() in ("off", "false", "none", "no", "0")
        self.enabled = connection.vendor == "postgresql" and not off
        self.conn: Any = None
        self._next_attempt = 0.0

    def fileno(self) -> int | None:
        """The socket to wait on, connecting (again) if needed; ``None`` when unavailable."""
        if not self.enabled:
            return None
        if self.conn is None and time.monotonic() >= self._next_attempt:
            self._connect()
        return self.conn.fileno() if self.conn is not None else None

    def _connect(self) -> None:
        import psycopg  # PostgreSQL only: SQLite installs need not have it

        settings = connection.settings_dict
        params = {
            "dbname": settings["NAME"],
            "user": settings["USER"] or None,
            "password": settings["PASSWORD"] or None,
            "host": settings["HOST"] or None,
            "port": settings["PORT"] or None,
        }
        where = [self.url] if self.url else []  # a URL of its own, else the default's settings
        try:
            self.conn = psycopg.connect(
                *where,
                **({} if where else {k: v for k, v in params.items() if v}),
                autocommit=True,
                connect_timeout=5,
                application_name="jobqueue-listener",
            )
            self.conn.execute(f"LISTEN {CHANNEL}")
            logger.info("listening channel=%s", CHANNEL)
        except psycopg.Error as exc:
            logger.warning("listen failed, polling only for now: %s", exc)
            self.close()
            self._next_attempt = time.monotonic() + self.retry_interval

    def drain(self) -> list[str]:
        """Return the queues announced since the last call (without waiting)."""
        if self.conn is None:
            return []
        import psycopg  # PostgreSQL only: SQLite installs need not have it

        try:
            return [note.payload for note in self.conn.notifies(timeout=0)]
        except psycopg.Error as exc:
            logger.warning("listen connection lost, reconnecting: %s", exc)
            self.close()
            return []

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                logger.debug("closing the listen connection failed", exc_info=True)
        self.conn = None
