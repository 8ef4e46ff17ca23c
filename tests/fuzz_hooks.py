"""Schemathesis hooks for tests/test_fuzz.py (``SCHEMATHESIS_HOOKS=tests.fuzz_hooks``).

The schema names two string formats JSON Schema does not define: ``cron`` (five
fields, or six with seconds first, that name a time which exists) and
``iana-time-zone``. These strategies generate valid values for them, so that
schema-valid requests are valid for the server too; invalid ones come from the
fuzzer's negative mode and the tests. For the same reason a generated workflow
(``POST /api/workflows``) is made a graph: unique names, edges to earlier jobs only.
"""

import re
import zoneinfo

import schemathesis
from hypothesis import strategies as st


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        value.map(str),
        st.integers(1, high - low + 1).map(lambda step: f"*/{step}"),
        st.tuples(value, value).map(sorted).map(lambda pair: f"{pair[0]}-{pair[1]}"),
        st.lists(value, min_size=2, max_size=3, unique=True).map(lambda v: ",".join(map(str, v))),
    )


# Days 1-28 exist in every month, so every expression fires.
_FIVE = st.tuples(_field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12), _field(0, 6))
CRON = st.one_of(
    _FIVE.map(" ".join),
    st.tuples(_field(0, 59), _FIVE).map(lambda parts: " ".join([parts[0], *parts[1]])),
)

# The server's list (jobs.models.time_zones) is this one; no Django in this process.
ZONES = st.sampled_from(sorted(zoneinfo.available_timezones()))

# A workflow job's name (jobs.lifecycle.STEP_NAME; no Django in this process).
STEP = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

schemathesis.openapi.format("cron", CRON)
schemathesis.openapi.format("iana-time-zone", ZONES)


@schemathesis.hook.apply_to(path="/api/workflows/", method="POST")
def map_case(context, case):
    """Make a generated workflow a graph the server takes: names made unique, and ``after``
    naming only earlier jobs, once each (so no cycle and no dangling edge). The schema
    cannot say either. A body invalid for another reason stays invalid: only valid names
    are renamed or dropped."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("jobs"), list):
        return case
    seen: list[str] = []
    for index, job in enumerate(body["jobs"]):
        if not isinstance(job, dict):
            continue
        name = job.get("name")
        if _step(name) and name in seen:
            suffix = f".{index}"
            job["name"] = name = name[: 100 - len(suffix)] + suffix
        if isinstance(job.get("after"), list):
            after = [a for a in job["after"] if not _step(a) or a in seen]
            job["after"] = [a for i, a in enumerate(after) if not _step(a) or a not in after[:i]]
        if isinstance(name, str):
            seen.append(name)
    return case


def _step(value) -> bool:
    return isinstance(value, str) and STEP.fullmatch(value) is not None
