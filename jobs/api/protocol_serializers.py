"""The bodies of the HTTP worker protocol (``/api/worker/...``), requests and answers.

A remote worker names itself (``worker_id``) in every request and each attempt it
holds by ``{id, attempt}``: the attempt number is the fencing token, so a report
for an attempt that was taken away changes nothing (409).
"""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs import lifecycle, tasks
from jobs.api.fields import (
    ClosedSerializerMixin,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictRegexField,
    StrictUUIDField,
)
from jobs.api.payload_schema import JSON_VALUE_REF
from jobs.exceptions import InvalidPayload

MAX_CLAIM = 100
MAX_HELD = 1000  # attempts one heartbeat or release may name
WAIT_RANGE = (0, 60)  # seconds; the server caps it further at JOBS_WORKER_MAX_WAIT
WORKER_ID = r"^[A-Za-z0-9_.:@/-]{1,200}$"
WORKER_ID_HELP = "Your worker's stable name (1-200 of letters, digits, '_.:@/-'): the lease holder."


def worker_id_field() -> StrictRegexField:
    return StrictRegexField(
        WORKER_ID,
        help_text=WORKER_ID_HELP,
        error_messages={"invalid": "Use 1-200 letters, digits, '_', '.', ':', '@', '/' or '-'."},
    )


@extend_schema_field(JSON_VALUE_REF)
class JsonValueField(serializers.JSONField):
    """Any JSON value, under the payload's rules (size, depth, no NUL characters)."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        try:
            lifecycle.validate_payload(value)
        except InvalidPayload as exc:
            raise serializers.ValidationError(str(exc).replace("payload", "value")) from None
        return value


class HeldSerializer(ClosedSerializerMixin, serializers.Serializer):
    """One attempt a worker holds: the job and its attempt number (the fencing token)."""

    id = StrictUUIDField()
    attempt = StrictIntegerField(min_value=1, max_value=2**31 - 1)


class ClaimSerializer(ClosedSerializerMixin, serializers.Serializer):
    """Claim up to ``limit`` due jobs of these external tasks, waiting up to ``wait`` seconds."""

    worker_id = worker_id_field()
    tasks = serializers.ListField(
        child=StrictCharField(max_length=200),
        min_length=1,
        max_length=100,
        help_text="External tasks this worker runs (each declared with external: true).",
    )
    queues = serializers.ListField(
        child=StrictRegexField(f"^{lifecycle.QUEUE_NAME.pattern}$"),
        required=False,
        max_length=100,
        help_text="Only jobs of these queues; absent or empty: every queue.",
    )
    limit = StrictIntegerField(required=False, default=1, min_value=1, max_value=MAX_CLAIM)
    wait = StrictFloatField(
        required=False,
        default=0,
        min_value=WAIT_RANGE[0],
        max_value=WAIT_RANGE[1],
        help_text="Seconds to wait for a due job when none is (long poll); capped by "
        "JOBS_WORKER_MAX_WAIT (default 20).",
    )
    hostname = StrictCharField(required=False, default="", max_length=255, allow_blank=True)
    pid = StrictIntegerField(required=False, default=0, min_value=0, max_value=2**31 - 1)

    def validate_tasks(self, names: list[str]) -> list[str]:
        external = tasks.external_names()
        if unknown := sorted(set(names) - external):
            raise serializers.ValidationError(
                f"Not external tasks: {', '.join(unknown)}. Remote workers claim only tasks "
                "declared external (JOBS_EXTERNAL_TASKS or tasks.register_external)."
            )
        return names


class ClaimedJobSerializer(serializers.Serializer):
    """A claimed attempt: run it, heartbeat it, report its outcome with ``attempt``."""

    id = serializers.UUIDField()
    task = serializers.CharField()
    queue = serializers.CharField()
    payload = serializers.JSONField(allow_null=True)
    attempt = serializers.IntegerField(
        source="attempts", help_text="The fencing token: send it with every report."
    )
    max_attempts = serializers.IntegerField()
    lease_expires_at = serializers.DateTimeField()
    timeout = serializers.FloatField(
        allow_null=True, help_text="Seconds the attempt may run (null: no limit)."
    )
    lease_seconds = serializers.FloatField(
        help_text="The lease's length: heartbeat well within it (e.g. every third)."
    )
    parent_results = serializers.JSONField(
        allow_null=True,
        help_text="A workflow job's parents' outcomes (id, name, status, result, error); "
        "null for a job without parents.",
    )


class ClaimResponseSerializer(serializers.Serializer):
    jobs = ClaimedJobSerializer(many=True)


class HeartbeatSerializer(ClosedSerializerMixin, serializers.Serializer):
    """The attempts this worker holds, to renew."""

    worker_id = worker_id_field()
    jobs = HeldSerializer(many=True, max_length=MAX_HELD, required=False, default=list)


class HeartbeatResponseSerializer(serializers.Serializer):
    held = HeldSerializer(many=True, help_text="Attempts still yours, their leases renewed.")
    taken = HeldSerializer(
        many=True,
        help_text="Attempts taken away (cancelled, recovered, moved by an operator, deleted): "
        "stop them; their reports would be refused.",
    )
    lease_expires_at = serializers.DateTimeField()


class ReportSerializer(ClosedSerializerMixin, serializers.Serializer):
    """A report on the attempt ``attempt`` (the fencing token) that ``worker_id`` holds."""

    worker_id = worker_id_field()
    attempt = StrictIntegerField(min_value=1, max_value=2**31 - 1)


class ProgressSerializer(ReportSerializer):
    """The attempt's progress, 0..100, and a message."""

    percent = StrictIntegerField(min_value=0, max_value=100)
    message = StrictCharField(required=False, default="", max_length=500, allow_blank=True)


class SucceedSerializer(ReportSerializer):
    """The attempt succeeded with ``result``."""

    result = JsonValueField(required=False, allow_null=True, default=None)


class FailSerializer(ReportSerializer):
    """The attempt failed: retried while attempts remain, unless ``retry`` is false."""

    error = StrictCharField(max_length=10_000)
    traceback = StrictCharField(required=False, allow_blank=True, default="", max_length=100_000)
    retry = StrictBooleanField(
        required=False,
        default=True,
        help_text="false: fail permanently (no further attempts).",
    )


class OutcomeSerializer(serializers.Serializer):
    """The job after the report."""

    id = serializers.UUIDField()
    attempt = serializers.IntegerField()
    status = serializers.CharField(help_text="processing, done, queued (a retry) or failed.")


class ReleaseSerializer(ClosedSerializerMixin, serializers.Serializer):
    """Attempts to hand back unfinished."""

    worker_id = worker_id_field()
    jobs = HeldSerializer(many=True, max_length=MAX_HELD)
    started = StrictBooleanField(
        required=False,
        default=False,
        help_text="false: the attempts never ran and get their attempt back; true: they "
        "ran part way and count (recorded as released).",
    )


class ReleaseResponseSerializer(serializers.Serializer):
    released = serializers.IntegerField()
