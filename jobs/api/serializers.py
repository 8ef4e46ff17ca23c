"""The job as JSON: the prototype's fields plus the queue's own."""

from typing import Any

from rest_framework import serializers

from jobs import lifecycle, tasks
from jobs.exceptions import InvalidPayload, UnknownTask
from jobs.models import Job, JobAttempt, Status


class JobAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobAttempt
        fields = ["number", "worker_id", "started_at", "finished_at", "outcome", "error"]


class JobSerializer(serializers.ModelSerializer):
    payload = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Any JSON value, at most JOBS_MAX_PAYLOAD_BYTES (default 256 KiB) as JSON.",
    )
    priority = serializers.IntegerField(required=False, min_value=-100, max_value=100)
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=100)
    timeout = serializers.FloatField(
        required=False, allow_null=True, min_value=0.1, max_value=86400
    )
    queue = serializers.RegexField(
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
        extra_kwargs = {
            "task": {"required": False},
            # A known key is not an error: create() answers with the existing job.
            "idempotency_key": {"validators": []},
        }
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


class JobStatusSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Status.choices)
