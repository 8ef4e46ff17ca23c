"""The job as JSON (the prototype's fields plus the queue's own), the schedule, the
task catalogue, the stats and the bulk retry; built on ``jobs.api.fields``."""

from collections.abc import Sequence
from typing import Any, ClassVar

from django.db.models import QuerySet
from rest_framework import serializers

from jobs import lifecycle, schedules, tasks
from jobs.api.fields import (
    ClosedSerializerMixin,
    FastRepresentationMixin,
    SharedFieldsMixin,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictModelSerializer,
    StrictRegexField,
    StrictUUIDField,
)
from jobs.conf import conf
from jobs.models import Job, JobAttempt, Schedule, Status, Worker

MAX_TASK_NAME = 200


def in_range(bounds: tuple[Any, Any]) -> dict[str, Any]:
    """A number field's bounds, refused with the message the lifecycle gives (a bulk create,
    Python code) for the same rule."""
    low, high = bounds
    message = f"Use a number from {low} to {high}."
    return {
        "min_value": low,
        "max_value": high,
        "error_messages": {"min_value": message, "max_value": message},
    }


class JobAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobAttempt
        fields = [
            "number",
            "worker_id",
            "started_at",
            "finished_at",
            "outcome",
            "error",
            "traceback",
        ]


class JobSerializer(
    SharedFieldsMixin, FastRepresentationMixin, ClosedSerializerMixin, StrictModelSerializer
):
    """A job: what to run (task, payload), where and when, and how it went."""

    payload = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Any JSON value, at most JOBS_MAX_PAYLOAD_BYTES (default 256 KiB) as JSON.",
    )
    task = StrictCharField(required=False, max_length=MAX_TASK_NAME)
    priority = StrictIntegerField(required=False, **in_range(lifecycle.PRIORITY_RANGE))
    max_attempts = StrictIntegerField(required=False, **in_range(lifecycle.MAX_ATTEMPTS_RANGE))
    timeout = StrictFloatField(required=False, allow_null=True, **in_range(lifecycle.TIMEOUT_RANGE))
    idempotency_key = StrictCharField(
        required=False, allow_null=True, allow_blank=True, max_length=lifecycle.MAX_IDEMPOTENCY_KEY
    )
    queue = StrictRegexField(
        f"^{lifecycle.QUEUE_NAME.pattern}$",
        required=False,
        error_messages={"invalid": "Use 1-100 letters, digits, '_', '.', ':' or '-'."},
    )
    concurrency_key = StrictCharField(
        required=False,
        allow_null=True,
        max_length=lifecycle.MAX_CONCURRENCY_KEY,
        help_text="Jobs sharing a key share its concurrency limit (the queue's or task's "
        "key_concurrency, default 1). Empty: the task's own key for the payload, if any.",
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
            "concurrency_key",
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
            "workflow",
            "parent_results",
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
            "workflow",
            "parent_results",
        ]
        # A known idempotency key is not an error: create() answers with the existing job.
        validators: list = []

    # Types and ranges only: the rules of a new job (a registered task, the payload's
    # limits and schema) are lifecycle.check_job's, applied by enqueue (InvalidJob: 400).

    def create(self, validated_data: dict[str, Any]) -> Job:  # pragma: no cover - unused
        raise NotImplementedError("jobs are created through lifecycle.enqueue")


# The JSON types of the writable job fields that JobSerializer passes through as
# they are (None: any JSON value). A bulk create whose every job has only such
# values skips the serializer: lifecycle.check_job applies the rules, as it does
# to every job; anything else (another type, a blank queue, a rule broken) goes
# through the serializer, which converts it or names the error as for one job.
PLAIN_JOB_TYPES: dict[str, tuple[type, ...] | None] = {
    "task": (str,),
    "payload": None,
    "queue": (str,),
    "priority": (int,),
    "max_attempts": (int,),
    "timeout": (int, float),
    "run_after": (type(None),),
    "idempotency_key": (type(None),),
}


def plain_jobs(items: Sequence[Any]) -> list[dict[str, Any]] | None:
    """``items`` as ``lifecycle.enqueue_many`` takes them (what JobSerializer would
    validate them to, but for the rules of ``check_job``), or None unless every item
    is a plain job: an object with fields of PLAIN_JOB_TYPES only."""
    types = PLAIN_JOB_TYPES
    specs = []
    for item in items:
        if type(item) is not dict or not item.keys() <= types.keys():
            return None
        for name, value in item.items():
            kinds = types[name]
            if kinds is not None and type(value) not in kinds:
                return None
        spec = {"payload": None, **item}  # the serializer's default
        if "queue" in item and not item["queue"]:
            return None  # blank: the serializer refuses it, check_job would not
        if len(spec.get("task", "")) > MAX_TASK_NAME:
            return None
        if "timeout" in spec:
            spec["timeout"] = float(spec["timeout"])
        specs.append(spec)
    return specs


class JobDetailSerializer(JobSerializer):
    history = JobAttemptSerializer(many=True, read_only=True)
    waiting_for = serializers.SerializerMethodField(
        help_text="Why a queued job is not running yet (a paused queue, a limit reached, "
        "not due); empty when nothing holds it back."
    )

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "history", "waiting_for"]

    def get_waiting_for(self, job: Job) -> str:
        return lifecycle.waiting_for(job)


class QueueSerializer(serializers.Serializer):
    """A queue's flow control as in force (stored values over JOBS_QUEUES) and its usage."""

    name = serializers.CharField(read_only=True)
    paused = serializers.BooleanField(read_only=True)
    concurrency = serializers.IntegerField(read_only=True, allow_null=True)
    key_concurrency = serializers.IntegerField(read_only=True, allow_null=True)
    rate = serializers.CharField(read_only=True, allow_null=True)
    key_rate = serializers.CharField(read_only=True, allow_null=True)
    processing = serializers.IntegerField(read_only=True)
    queued = serializers.IntegerField(read_only=True)
    due = serializers.IntegerField(read_only=True)

    def to_representation(self, name: str) -> dict[str, Any]:
        return lifecycle.queue_state(name)


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
    external = serializers.BooleanField(
        help_text="Run by remote workers over HTTP (/api/worker/...), never by runworker."
    )

    def to_representation(self, spec: tasks.TaskSpec) -> dict[str, Any]:
        return {
            "name": spec.name,
            "description": spec.description,
            "queue": spec.queue,
            "priority": spec.priority,
            "max_attempts": spec.max_attempts or conf.MAX_ATTEMPTS,
            "timeout": spec.timeout,
            # Exact where the task declares one, else an outline of its serializer.
            "payload_schema": spec.json_schema() or describe_schema(spec.schema),
            "external": spec.external,
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


class ScheduleSerializer(ClosedSerializerMixin, StrictModelSerializer):
    """A recurring job: a cron timetable and the job each fire time creates."""

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
        # A name another schedule holds is a conflict (409, from schedules.save), not
        # invalid input.
        extra_kwargs = {"name": {"validators": []}}

    def validate_cron(self, value: str) -> str:
        return " ".join(value.split())

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The payload is checked against the task: a change states both, so that what
        # the request says is what is checked (the schema says the same).
        if self.partial and ("task" in attrs) != ("payload" in attrs):
            missing = "payload" if "task" in attrs else "task"
            raise serializers.ValidationError(
                {missing: ["Send task and payload together, or neither."]}
            )
        return attrs

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
    waiting = _CountSerializer(help_text="Workflow jobs waiting for their parents.")
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
    waiting = serializers.IntegerField()
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
BULK_FILTERS = ("status", "queue", "task", "error_class", "finished_after")


class BulkSelectionSerializer(ClosedSerializerMixin, serializers.Serializer):
    """Which jobs a bulk verb acts on: a list of ids, a filter, or "all": true.

    A subclass names the ``verb`` (``lifecycle.VERBS``), the statuses its ``status``
    filter offers, the status a filter means when it names none (``default_status``)
    and what "all" means (``everything``)."""

    verb: ClassVar[str]
    statuses: ClassVar[list[str]]
    default_status: ClassVar[str | None] = None
    everything: ClassVar[str]

    # The body's alternatives, as validate() tells them apart (AutoSchema adds this).
    # {"not": {}} is "absent": no value is allowed.
    request_schema: ClassVar[dict[str, Any]] = {
        "oneOf": [
            {
                "title": "By ids",
                "required": ["ids"],
                "properties": {name: {"not": {}} for name in (*BULK_FILTERS, "all")},
            },
            {"title": "By filter", "properties": {"ids": {"not": {}}}},
        ]
    }

    queue = StrictCharField(required=False, max_length=100)
    task = StrictCharField(required=False, max_length=MAX_TASK_NAME)
    error_class = StrictCharField(
        required=False,
        max_length=200,
        help_text="The cause of the last failure: the exception's class name, e.g. ValueError.",
    )
    finished_after = serializers.DateTimeField(required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        # At most JOBS_MAX_BULK ids, read when the body is read (and the schema written).
        ids = serializers.ListField(
            child=StrictUUIDField(), required=False, min_length=1, max_length=conf.MAX_BULK
        )
        status = serializers.ChoiceField(choices=self.statuses, required=False)
        every = StrictBooleanField(required=False, help_text=f"true: {self.everything}.")
        return {"ids": ids, "status": status, **super().get_fields(), "all": every}

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "ids" in attrs and len(attrs) > 1:
            raise serializers.ValidationError("Give either ids or a filter, not both.")
        # An empty body is no selection: it must never mean "everything".
        if not attrs.keys() & {"ids", *BULK_FILTERS} and not attrs.get("all"):
            raise serializers.ValidationError(
                f'Say which jobs to {self.verb.replace("_", " ")}: "ids", a filter '
                f"({', '.join(f'{name!r}' for name in BULK_FILTERS)}), "
                f'or "all": true for {self.everything}.'.replace("'", '"')
            )
        return attrs

    def selection(self) -> QuerySet:
        """The jobs chosen, as a queryset (the ids, or the filter)."""
        chosen = self.validated_data
        if "ids" in chosen:
            return Job.objects.filter(pk__in=chosen["ids"])
        jobs = Job.objects.all()
        if status := chosen.get("status", self.default_status):
            jobs = jobs.filter(status=status)
        for name in ("queue", "task", "error_class"):
            if name in chosen:
                jobs = jobs.filter(**{name: chosen[name]})
        if "finished_after" in chosen:
            jobs = jobs.filter(finished_at__gte=chosen["finished_after"])
        return jobs


class BulkRetrySerializer(BulkSelectionSerializer):
    """Which jobs to requeue: a list of ids, a filter, or "all": true (the failure queue)."""

    verb = "retry"
    statuses = RETRYABLE_STATUSES
    default_status = Status.FAILED.value
    everything = "the whole failure queue (or all jobs of `status`)"


class BulkCancelSerializer(BulkSelectionSerializer):
    """Which jobs to cancel: a list of ids, a filter, or "all": true (every queued and
    running job)."""

    verb = "cancel"
    statuses = [Status.QUEUED.value, Status.PROCESSING.value]
    everything = "every queued, waiting and running job (or all jobs of `status`)"


class BulkDeleteSerializer(BulkSelectionSerializer):
    """Which jobs to delete: a list of ids, a filter, or "all": true (every job not
    running)."""

    verb = "delete"
    statuses = [s for s in Status.values if s != Status.PROCESSING]
    everything = "every job that is not running (or all jobs of `status`)"


class BulkResultSerializer(serializers.Serializer):
    changed = serializers.IntegerField()
    skipped = serializers.DictField(child=serializers.IntegerField())
    batches = serializers.IntegerField(
        help_text="How many batches (of at most JOBS_MAX_BULK jobs) it took."
    )
