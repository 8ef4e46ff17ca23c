"""Errors raised by the queue's core, independent of HTTP or the admin."""

from django.db import InterfaceError, OperationalError

try:
    from psycopg import OperationalError as PgOperationalError
    from psycopg import errors as pg_errors
except ImportError:  # the "postgres" extra is not installed: no PostgreSQL connection
    PgOperationalError = pg_errors = None  # type: ignore[assignment,misc]
try:
    from MySQLdb import OperationalError as MyOperationalError
except ImportError:  # the "mysql" extra is not installed: no MariaDB/MySQL connection
    MyOperationalError = None  # type: ignore[assignment,misc]

# MariaDB/MySQL error numbers that mean "no connection now": client errors 2002/2003
# (cannot connect), 2006/2013 (server gone, connection lost); server errors 1040 (too
# many connections), 1053 (shutting down), 1927 (connection killed, MariaDB), 4031
# (disconnected for inactivity, MySQL).
MYSQL_UNAVAILABLE = frozenset({2002, 2003, 2006, 2013, 1040, 1053, 1927, 4031})
# ... and "this transaction lost to another one, run it again": 1213 (deadlock: InnoDB
# rolled it back), 1205 (lock wait timeout).
MYSQL_CONFLICT = frozenset({1213, 1205})


class JobsError(Exception):
    """Base class for the queue's own errors."""


class TransitionRefused(JobsError):
    """A status change was refused: the job is not in a state that allows it.

    ``current`` is the status found (``None`` when the job does not exist).
    """

    def __init__(self, message: str, *, current: str | None = None) -> None:
        super().__init__(message)
        self.current = current


def flatten_errors(errors: object, prefix: str = "") -> dict[str, list[str]]:
    """Turn nested error details (DRF's, a task schema's) into ``{"field.sub": [messages]}``."""
    if isinstance(errors, dict):
        flat: dict[str, list[str]] = {}
        for key, value in errors.items():
            flat |= flatten_errors(value, f"{prefix}.{key}" if prefix else str(key))
        return flat
    if isinstance(errors, list) and any(isinstance(item, dict | list) for item in errors):
        flat = {}
        for index, item in enumerate(errors):
            flat |= flatten_errors(item, f"{prefix}.{index}" if prefix else str(index))
        return flat
    items = errors if isinstance(errors, list) else [errors]
    return {prefix or "non_field_errors": [str(item) for item in items]}


class InvalidInput(JobsError):
    """Values the queue refuses; ``errors`` maps each field (``"payload.to"`` when nested)
    to its messages. The API answers 400 with them, the admin shows them as form errors."""

    def __init__(self, errors: dict[str, list[str]], message: str | None = None) -> None:
        self.errors = errors
        super().__init__(
            message or "; ".join(f"{field}: {' '.join(texts)}" for field, texts in errors.items())
        )


class InvalidJob(InvalidInput):
    """The job a call would create breaks a rule (``lifecycle.check_job``)."""


class UnknownTask(InvalidJob):
    """A job names a task that is not registered."""

    def __init__(self, message: str) -> None:
        super().__init__({"task": [message]}, message)


class InvalidSchedule(InvalidInput):
    """A schedule that cannot be saved: its cron never fires, or the job it creates is invalid."""


class JobChanged(TransitionRefused):
    """An edit was refused because the job left the status its author saw (a stale page)."""


class NameTaken(JobsError):
    """Another schedule has this name already."""


class PermanentFailure(JobsError):
    """Raise from a task to fail the job at once, without further retries."""


class InvalidPayload(JobsError):
    """A job's payload does not match its task's schema; ``errors`` says where and why."""

    def __init__(self, errors: object) -> None:
        super().__init__(errors if isinstance(errors, str) else f"invalid payload: {errors}")
        self.errors = errors


class WorkerLost(JobsError):
    """The worker running an attempt stopped renewing its lease (crash, kill, long pause)."""


class JobCancelled(JobsError):
    """The job was cancelled by a client or an operator."""


class AttemptTimedOut(JobsError):
    """An attempt overran the job's timeout and was stopped."""


class JobNotFound(JobsError, LookupError):
    """No job has this id (or it is not a job id at all)."""

    def __init__(self, job_id: object) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached right now, rather than
    refusing a query: the connection failed, was lost or closed, or the server is
    shutting down, starting up or full. Retrying later is the answer to these.

    Matched by class (Django's wrapper, then the driver's error it wraps).
    """
    if isinstance(exc, InterfaceError):  # the connection is closed or unusable
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if MyOperationalError is not None and isinstance(cause, MyOperationalError):
        return bool(cause.args) and cause.args[0] in MYSQL_UNAVAILABLE
    if PgOperationalError is None:
        return False
    if type(cause) is PgOperationalError:  # no SQLSTATE: no connection, or it broke
        return True
    return isinstance(
        cause,
        pg_errors.ConnectionException  # SQLSTATE class 08
        | pg_errors.AdminShutdown
        | pg_errors.CrashShutdown
        | pg_errors.CannotConnectNow
        | pg_errors.TooManyConnections,
    )


def lock_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` says the database rolled the transaction back because it conflicted
    with another (a deadlock, a lock wait timeout): running it again is the answer.

    InnoDB picks deadlock victims among row-by-row writes (MariaDB, MySQL); PostgreSQL's
    statements here take their rows in one go. Matched by class and error number.
    """
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if MyOperationalError is not None and isinstance(cause, MyOperationalError):
        return bool(cause.args) and cause.args[0] in MYSQL_CONFLICT
    return pg_errors is not None and isinstance(cause, pg_errors.DeadlockDetected)
