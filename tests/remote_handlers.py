"""Handlers for the reference client in tests (``clients/python/jobqueue_worker.py``).

Imported by the client's own process: standard library only, and each handler
checks that no Django was loaded alongside it.
"""

import os
import sys
import time
from pathlib import Path
from typing import Any


def record(payload: dict[str, Any]) -> dict[str, Any]:
    """Append "<n> <pid>" to payload['log']: the execution log the tests count."""
    assert "django" not in sys.modules, "the reference client must run without Django"
    with open(payload["log"], "a") as handle:
        handle.write(f"{payload['n']} {os.getpid()}\n")
    return {"n": payload["n"], "pid": os.getpid()}


def sleep(payload: dict[str, Any]) -> dict[str, Any]:
    """Touch payload['marker'] (with this pid), then sleep payload['seconds']."""
    Path(payload["marker"]).write_text(str(os.getpid()))
    time.sleep(payload["seconds"])
    return {"pid": os.getpid()}


def odd(payload: dict[str, Any]) -> Any:
    """Outcomes a handler may produce that the client must turn into a permanent failure."""
    kind = payload["kind"]
    if kind == "not json":
        return {1, 2}
    if kind == "permanent":
        from jobqueue_worker import PermanentFailure  # as the README tells handlers to

        raise PermanentFailure("no use trying again")
    return "x" * 300_000  # "too large": over the server's 256 KiB
