"""Schemathesis hooks for tests/test_fuzz.py (``SCHEMATHESIS_HOOKS=tests.fuzz_hooks``).

The schema names two string formats JSON Schema does not define: ``cron`` (five
fields, or six with seconds first, that name a time which exists) and
``iana-time-zone``. These strategies generate valid values for them, so that
schema-valid requests are valid for the server too; invalid ones come from the
fuzzer's negative mode and the tests.
"""

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

schemathesis.openapi.format("cron", CRON)
schemathesis.openapi.format("iana-time-zone", ZONES)
