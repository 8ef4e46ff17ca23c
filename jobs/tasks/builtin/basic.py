"""The built-in ``simulate``, ``noop`` and ``echo`` tasks."""

import time
from typing import Any

from jobs.conf import conf
from jobs.tasks import register


@register("simulate")
def simulate(payload: Any) -> dict[str, Any]:
    """Sleep JOBS_SIMULATE_SECONDS, then describe the payload (the prototype's task)."""
    time.sleep(conf.SIMULATE_SECONDS)
    return {"processed": payload, "length": len(str(payload)) if payload is not None else 0}


@register("noop")
def noop(payload: Any) -> None:
    """Return at once; used by benchmarks."""
    return None


@register("echo")
def echo(payload: Any) -> Any:
    """Return the payload unchanged."""
    return payload
