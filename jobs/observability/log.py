"""Log formatting: plain text by default, JSON lines with ``JOBS_LOG_FORMAT=json``.

Code that logs a job transition passes its fields twice: in the message, as
``key=value`` pairs a person can read, and as ``extra=`` attributes of the log
record, which ``JsonFormatter`` writes as JSON keys. Settings pick the formatter
(``LOGGING``), so the web processes, the workers and their executor children
all log the same way.
"""

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message and its extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc_info"] = record.exc_text
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str)


def ensure_console() -> Callable[[], None]:
    """Send the ``jobs`` loggers to stderr when the project's ``LOGGING`` leaves them nowhere;
    return a function that undoes it.

    Django's default ``LOGGING`` handles only the ``django`` loggers, so without this
    a worker in a project that never configured logging would show warnings alone,
    and without their level or time. A project whose ``LOGGING`` gives ``jobs`` (or
    the root logger) a handler keeps its own; a level it sets on ``jobs`` is kept too,
    otherwise INFO: the worker's start and stop, one line per job transition, and
    errors with their tracebacks.
    """
    logger = logging.getLogger("jobs")
    if logger.hasHandlers():
        return lambda: None
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET:
        logger.setLevel(logging.INFO)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return undo
