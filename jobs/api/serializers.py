"""The job as JSON (the prototype's fields plus the queue's own), and the schedule."""

from typing import Any

from django.db import models
from rest_framework import serializers
from rest_framework.fields import SkipField

from jobs import lifecycle, schedules, tasks
from jobs.conf import conf
from jobs.exceptions import InvalidPayload, UnknownTask
from jobs.models import Job, JobAttempt, Schedule, Status, Worker


class StrictTypeMixin:
    """Accept only the JSON type the schema documents: ``5`` is not ``"5"``, nor the reverse."""

    json_types: tuple[type, ...] = (str,)

    def to_internal_value(self, data: Any) -> Any:
        # bool is an int in Python, but true is no number in JSON.
        if not isinstance(data, self.json_types) or (
            isinstance(data, bool) and bool not in self.json_types
        ):
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


class StrictBooleanField(StrictTypeMixin, serializers.BooleanField):
    json_types = (bool,)


class StrictUUIDField(StrictTypeMixin, serializers.UUIDField):
    pass


# A ModelSerializer whose fields built from the model take only their JSON type. (A
# comment, not a docstring: the schema would show a docstring as every subclass's own.)
class StrictModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.IntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.FloatField: StrictFloatField,
        models.BooleanField: StrictBooleanField,
        models.UUIDField: StrictUUIDField,
    }


class ClosedSerializerMixin:
    """Refuse fields a client may not send (unknown or read-only) instead of ignoring them.

    A typo (``"priorty"``) is a 400, not a job silently created without it. The
    schema says the same: request bodies have ``additionalProperties: false``.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = self.__dict__.get("_writable")
            if writable is None:  # once per serializer, not per item of a bulk create
                fields = self.fields  # type: ignore[attr-defined]
                writable = {name for name, field in fields.items() if not field.read_only}
                self.__dict__["_writable"] = writable
            if unknown := sorted(set(data) - writable):
                raise serializers.ValidationError(
                    {name: ["Unknown or read-only field."] for name in unknown}
                )
        return super().to_internal_value(data)  # type: ignore[misc]


# Field classes whose to_representation returns a value of these exact types unchanged.
_UNCHANGED: list[tuple[type, tuple[type, ...]]] = [
    (serializers.BooleanField, (bool,)),
    (serializers.IntegerField, (int,)),
    (serializers.FloatField, (float,)),
    (serializers.CharField, (str,)),
]
_ANY = ()  # a non-binary JSONField: every value is returned unchanged


class FastRepresentationMixin:
    """``to_representation`` without DRF's per-field machinery where it changes nothing.

    DRF calls ``get_attribute`` and ``to_representation`` on every field of every
    object: a good part of the CPU time of a 1,000-job answer. A plain attribute
    whose value already has the field's output type (a ``str`` for a ``CharField``,
    anything for a non-binary ``JSONField``) is copied as it is; every other field
    (dates, UUIDs, choices, nested serializers) still goes through DRF. The output
    is DRF's, key for key (tests/test_api.py compares them).
    """

    def _plan(self) -> list[tuple[str, Any, str | None, tuple[type, ...]]]:
        plan = self.__dict__.get("_representation_plan")
        if plan is None:
            plan = []
            for field in self._readable_fields:  # type: ignore[attr-defined]
                attr, types = None, _ANY
                plain = len(field.source_attrs) == 1
                if plain and isinstance(field, serializers.JSONField) and not field.binary:
                    attr = field.source_attrs[0]
                for cls, exact in _UNCHANGED:
                    if plain and type(field).to_representation is cls.to_representation:
                        attr, types = field.source_attrs[0], exact
                plan.append((field.field_name, field, attr, types))
            self.__dict__["_representation_plan"] = plan
        return plan

    def to_representation(self, instance: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, field, attr, types in self._plan():
            if attr is not None:
                value = getattr(instance, attr)
                if value is None or types is _ANY or type(value) in types:
                    out[name] = value
                    continue
            try:
                value = field.get_attribute(instance)
            except SkipField:
                continue
            out[name] = None if value is None else field.to_representation(value)
        return out


class JobAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobAttempt
        fields = ["number", "worker_id", "started_at", "finished_at", "outcome", "error"]


class JobSerializer(FastRepresentationMixin, ClosedSerializerMixin, StrictModelSerializer):
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
            "progress",
            "progress_message",
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
            "progress",
            "progress_message",
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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Check the payload against the task's schema, so a bad one never queues."""
        try:
            tasks.get(attrs.get("task", "simulate")).validate_payload(attrs.get("payload"))
        except InvalidPayload as exc:
            raise serializers.ValidationError({"payload": exc.errors}) from None
        except UnknownTask:
            pass  # reported by validate_task
        return attrs

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


_JSON_TYPES: list[tuple[type, dict[str, Any]]] = [
    (serializers.BooleanField, {"type": "boolean"}),
    (serializers.IntegerField, {"type": "integer"}),
    (serializers.FloatField, {"type": "number"}),
    (serializers.ListField, {"type": "array"}),
    (serializers.DictField, {"type": "object"}),
    (serializers.JSONField, {}),
    (serializers.EmailField, {"type": "string", "format": "email"}),
    (serializers.CharField, {"type": "string"}),
]


def describe_schema(schema: Any) -> dict[str, Any] | None:
    """Describe a task's payload schema as JSON Schema (a dict schema is returned as is)."""
    if schema is None or isinstance(schema, dict):
        return schema
    properties, required = {}, []
    for name, field in schema().fields.items():
        spec = next((dict(t) for cls, t in _JSON_TYPES if isinstance(field, cls)), {})
        if isinstance(field, serializers.ChoiceField):
            spec = {"enum": list(field.choices)}
        if field.help_text:
            spec["description"] = str(field.help_text)
        properties[name] = spec
        if field.required:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


class TaskSerializer(serializers.Serializer):
    """A registered task, as ``GET /api/tasks`` lists it."""

    name = serializers.CharField()
    description = serializers.CharField()
    queue = serializers.CharField()
    priority = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    timeout = serializers.FloatField(allow_null=True)
    payload_schema = serializers.JSONField(allow_null=True)

    def to_representation(self, spec: tasks.TaskSpec) -> dict[str, Any]:
        return {
            "name": spec.name,
            "description": spec.description,
            "queue": spec.queue,
            "priority": spec.priority,
            "max_attempts": spec.max_attempts or conf.MAX_ATTEMPTS,
            "timeout": spec.timeout,
            "payload_schema": describe_schema(spec.schema),
        }


class WorkerSerializer(serializers.ModelSerializer):
    alive = serializers.BooleanField(source="is_alive", read_only=True)
    current_jobs = serializers.SerializerMethodField()

    class Meta:
        model = Worker
        fields = [
            "id",
            "hostname",
            "pid",
            "queues",
            "concurrency",
            "started_at",
            "last_heartbeat_at",
            "alive",
            "current_jobs",
        ]

    def get_current_jobs(self, worker: Worker) -> list[str]:
        return [str(pk) for pk in worker.current_jobs().values_list("pk", flat=True)]


class ScheduleSerializer(StrictModelSerializer):
    payload = serializers.JSONField(required=False, allow_null=True, default=None)

    class Meta:
        model = Schedule
        fields = [
            "id",
            "name",
            "cron",
            "timezone",
            "task",
            "payload",
            "queue",
            "priority",
            "enabled",
            "catch_up",
            "last_fire_at",
            "next_fire_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "last_fire_at", "next_fire_at", "created_at", "updated_at"]

    def validate_cron(self, value: str) -> str:
        return " ".join(value.split())

    def validate_task(self, value: str) -> str:
        try:
            tasks.get(value)
        except UnknownTask as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def create(self, validated_data: dict[str, Any]) -> Schedule:
        return schedules.save(Schedule(**validated_data))

    def update(self, instance: Schedule, validated_data: dict[str, Any]) -> Schedule:
        for field, value in validated_data.items():
            setattr(instance, field, value)
        return schedules.save(instance)


class _CountSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    exact = serializers.BooleanField(help_text="False: an estimate (or a lower bound).")


class _StatusCountsSerializer(serializers.Serializer):
    queued = _CountSerializer()
    processing = _CountSerializer()
    done = _CountSerializer()
    failed = _CountSerializer()
    cancelled = _CountSerializer()


class _RecentSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    failed = serializers.IntegerField()


class _WindowsSerializer(serializers.Serializer):
    last_1m = _RecentSerializer()
    last_5m = _RecentSerializer()
    last_60m = _RecentSerializer()


class _QueueStatsSerializer(serializers.Serializer):
    queued = serializers.IntegerField()
    processing = serializers.IntegerField()
    lag_seconds = serializers.FloatField(
        allow_null=True, help_text="Age of the oldest due queued job; null: none queued."
    )
    finished = _WindowsSerializer()


class _WorkersSerializer(serializers.Serializer):
    alive = serializers.IntegerField()


class StatsSerializer(serializers.Serializer):
    """The shape of ``GET /api/stats`` (read-only)."""

    generated_at = serializers.DateTimeField()
    statuses = _StatusCountsSerializer()
    queues = serializers.DictField(child=_QueueStatsSerializer())
    finished = _WindowsSerializer(help_text="Jobs done and failed, all queues.")
    workers = _WorkersSerializer()


RETRYABLE_STATUSES = [Status.FAILED.value, Status.CANCELLED.value, Status.DONE.value]


class BulkRetrySerializer(ClosedSerializerMixin, serializers.Serializer):
    """Which jobs to requeue: a list of ids, or a filter over the failure queue."""

    ids = serializers.ListField(
        child=StrictUUIDField(), required=False, min_length=1, max_length=10_000
    )
    status = serializers.ChoiceField(choices=RETRYABLE_STATUSES, required=False)
    queue = StrictCharField(required=False, max_length=100)
    task = StrictCharField(required=False, max_length=200)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "ids" in attrs and len(attrs) > 1:
            raise serializers.ValidationError("Give either ids or a filter, not both.")
        if len(attrs.get("ids", [])) > conf.MAX_BULK:
            raise serializers.ValidationError(f"At most {conf.MAX_BULK} ids (JOBS_MAX_BULK).")
        return attrs


class BulkResultSerializer(serializers.Serializer):
    changed = serializers.IntegerField()
    skipped = serializers.DictField(child=serializers.IntegerField())
