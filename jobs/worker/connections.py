"""Database connections in worker processes (the supervisor and its executor children)."""

from django.db import connections


def skip_health_checks() -> None:
    """Drop Django's per-request connection check (a ``SELECT 1`` before each pass's
    first query) in worker processes: a broken connection surfaces as a
    ``DatabaseError``, which the loop catches, and ``close_old_connections`` then
    replaces the connection."""
    for connection in connections.all():
        connection.settings_dict["CONN_HEALTH_CHECKS"] = False
        connection.health_check_enabled = False
