"""How worker processes use database connections, whatever the project's settings say.

A worker (the supervisor and each executor child) runs thousands of short
transactions a second, so it keeps its connections open across jobs even when
the project sets ``CONN_MAX_AGE = 0`` (Django's default, right for web requests,
ruinous for a worker: two new connections per job). A connection is checked
only after a database error, by Django's ``close_old_connections()`` (which the
loops call at the top of every pass): if it no longer works it is dropped and
the next query reconnects (after the wait ``db_retry.DatabaseRetry`` sets).

SQLite needs three settings for several processes to share the file: WAL (readers
beside the writer), a busy timeout (writers wait for each other instead of
failing), and ``BEGIN IMMEDIATE`` (a transaction that reads, then writes, takes
the write lock first instead of failing with "database is locked" halfway).
``keep_connections`` applies whichever the project did not set to the worker's
own connections (with ``synchronous=NORMAL``, see ``_worker_sqlite_options``); the
system check ``jobs.W001`` asks the project to set them for its other processes
(web, shell), which enqueue, cancel and retry jobs too.
"""

import logging
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS, connections

logger = logging.getLogger(__name__)

SQLITE_OPTIONS: dict[str, Any] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
_LABELS = {
    "transaction_mode": "transaction_mode IMMEDIATE",
    "timeout": "a busy timeout",
    "init_command": "WAL journal mode",
}


def _missing_sqlite_options(options: dict[str, Any]) -> list[str]:
    missing = []
    if str(options.get("transaction_mode") or "").upper() not in {"IMMEDIATE", "EXCLUSIVE"}:
        missing.append("transaction_mode")
    if options.get("timeout") is None:
        missing.append("timeout")
    if "journal_mode=wal" not in str(options.get("init_command", "")).lower().replace(" ", ""):
        missing.append("init_command")
    return missing


def keep_connections() -> None:
    """Make this process's connections persistent, checked after errors only, and give
    SQLite connections the settings several processes need (see the module docstring).

    Call it in a worker process before its first query: a connection already open
    is closed so that it reopens with these settings.
    """
    for connection in connections.all():
        connection.settings_dict["CONN_MAX_AGE"] = None
        connection.close_at = None
        # No SELECT 1 before each pass: a broken connection surfaces as an error.
        connection.settings_dict["CONN_HEALTH_CHECKS"] = False
        connection.health_check_enabled = False
        if connection.vendor != "sqlite":
            continue
        options = connection.settings_dict.get("OPTIONS") or {}
        wanted = _worker_sqlite_options(options)
        if wanted != options:
            connection.settings_dict["OPTIONS"] = wanted
            connection.close()  # reopen with the options above
            logger.debug("database=%s sqlite options=%s", connection.alias, wanted)


def _worker_sqlite_options(options: dict[str, Any]) -> dict[str, Any]:
    """Return ``options`` with what a worker needs added; values the project chose stay.

    ``synchronous=NORMAL`` too, unless the project chose: in WAL mode it syncs at
    checkpoints rather than at every commit. A power cut may then undo a worker's
    last claims or completions, never corrupt the file; those jobs run again
    (at-least-once, as after any crash). Enqueues come from the project's own
    connections, with its own durability.
    """
    wanted = dict(options)
    if str(wanted.get("transaction_mode") or "").upper() not in {"IMMEDIATE", "EXCLUSIVE"}:
        wanted["transaction_mode"] = SQLITE_OPTIONS["transaction_mode"]
    if wanted.get("timeout") is None:
        wanted["timeout"] = SQLITE_OPTIONS["timeout"]
    command = str(wanted.get("init_command", "")).strip().rstrip(";")
    extra = []
    if "journal_mode" not in command.lower():
        extra.append("PRAGMA journal_mode=WAL")
    if "synchronous" not in command.lower():
        extra.append("PRAGMA synchronous=NORMAL")
    if extra:
        wanted["init_command"] = "; ".join([command, *extra] if command else extra)
    return wanted


def check_sqlite_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when the jobs database is SQLite without the settings workers rely on."""
    return sqlite_warnings(settings.DATABASES.get(DEFAULT_DB_ALIAS, {}))


def sqlite_warnings(database: dict[str, Any]) -> list[checks.CheckMessage]:
    """The check's findings for one ``DATABASES`` entry."""
    if database.get("ENGINE") != "django.db.backends.sqlite3":
        return []
    missing = _missing_sqlite_options(database.get("OPTIONS") or {})
    if not missing:
        return []
    return [
        checks.Warning(
            "DATABASES['default'] is SQLite without the OPTIONS jobqueue needs beside its "
            f"workers ({', '.join(_LABELS[name] for name in missing)}): other processes "
            "(web, shell) may fail with 'database is locked' while workers run.",
            hint=f"Add to DATABASES['default']: \"OPTIONS\": {SQLITE_OPTIONS!r}. "
            "runworker applies them to its own connections already.",
            obj="settings.DATABASES",
            id="jobs.W001",
        )
    ]
