"""The job as JSON: the prototype's fields plus the queue's own."""

from typing import Any

from rest_framework import serializers

from jobs import lifecycle, tasks
from jobs.exceptions import InvalidPayload, UnknownTask
from jobs.models import Job, JobAttempt, Status


class StrictTypeMixin:
    """Accept only the JSON type the schema documents: ``5`` is not ``"5"``, nor the reverse."""

    json_types: tuple[type, ...] = (str,)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, self.json_types):
            self.fail("invalid")  # type: ignore[attr-defined]
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictCharField(StrictTypeMixin, serializers.CharField):
    pass


class StrictRegexField(StrictTypeMixin, serializers.RegexField):
    pass


class StrictIntegerField(StrictTypeMixin, serializers.IntegerField):
    # JSON has one number type: 14.0 is the integer 14 (and 14.5 is refused).
    json_types = (int, float)


class StrictFloatField(StrictTypeMixin, serializers.FloatField):
    json_types = (int, float)


class ClosedSerializerMixin:
    """Refuse fields a client may not send (unknown or read-only) instead of ignoring them.

    A typo (``"priorty"``) is a 400, not a job silently created without it. The
    schema says the same: request bodies have ``additionalProperties: false``.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            fields = self.fields  # type: ignore[attr-defined]
            writable = {name for name, field in fields.items() if not field.read_only}
            if unknown := sorted(set(data) - writable):
                raise serializers.ValidationError(
                    {name: ["Unknown or read-only field."] for name in unknown}
                )
        return super().to_internal_value(data)  # type: ignore[misc]


class JobAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobAttempt
        fields = ["number", "worker_id", "started_at", "finished_at", "outcome", "error"]


class JobSerializer(ClosedSerializerMixin, serializers.ModelSerializer):
    """A job: what to run (task, payload), where and when, and how it went."""

    payload = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Any JSON value, at most JOBS_MAX_PAYLOAD_BYTES (default 256 KiB) as JSON.",
    )
    task = StrictCharField(required=False, max_length=200)
    priority = StrictIntegerField(required=False, min_value=-100, max_value=100)
    max_attempts = StrictIntegerField(required=False, min_value=1, max_value=100)
    timeout = StrictFloatField(required=False, allow_null=True, min_value=0.1, max_value=86400)
    idempotency_key = StrictCharField(
        required=False, allow_null=True, allow_blank=True, max_length=200
    )
    queue = StrictRegexField(
        r"^[A-Za-z0-9_.:-]{1,100}$",
        required=False,
        error_messages={"invalid": "Use 1-100 letters, digits, '_', '.', ':' or '-'."},
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "task",
            "payload",
            "status",
            "queue",
            "priority",
            "run_after",
            "attempts",
            "max_attempts",
            "timeout",
            "idempotency_key",
            "result",
            "error",
            "traceback",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
            "worker_id",
            "lease_expires_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "attempts",
            "result",
            "error",
            "traceback",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
            "worker_id",
            "lease_expires_at",
        ]
        # A known idempotency key is not an error: create() answers with the existing job.
        validators: list = []

    def validate_payload(self, value: Any) -> Any:
        try:
            lifecycle.validate_payload(value)
        except InvalidPayload as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_task(self, value: str) -> str:
        try:
            tasks.get(value)
        except UnknownTask as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def create(self, validated_data: dict[str, Any]) -> Job:  # pragma: no cover - unused
        raise NotImplementedError("jobs are created through lifecycle.enqueue")


class JobDetailSerializer(JobSerializer):
    history = JobAttemptSerializer(many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "history"]


class JobStatusSerializer(ClosedSerializerMixin, serializers.Serializer):
    """The status to move a job to, through the lifecycle's manual transitions."""

    # PATCH /status needs the status: the schema must not mark it optional.
    partial_on_patch = False

    status = serializers.ChoiceField(choices=Status.choices)
