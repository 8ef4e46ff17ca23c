"""The jobs API: thin views over ``jobs.lifecycle`` and ``jobs.runner``."""

import contextlib
import hmac
import logging
from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import lifecycle, runner, schedules, tasks
from jobs.api.defaults import ApiDefaults, ListDefaults
from jobs.api.errors import ErrorSerializer, json_error, log_unavailable, read_only
from jobs.api.filters import JobFilter, ScheduleFilter
from jobs.api.schema import error_response
from jobs.api.serializers import (
    BulkCancelSerializer,
    BulkDeleteSerializer,
    BulkResultSerializer,
    BulkRetrySerializer,
    BulkSelectionSerializer,
    JobDetailSerializer,
    JobSerializer,
    JobStatusSerializer,
    QueueSerializer,
    ScheduleSerializer,
    StatsSerializer,
    TaskSerializer,
    WorkerSerializer,
    plain_jobs,
)
from jobs.conf import conf
from jobs.exceptions import InvalidJob, NameTaken, TransitionRefused, database_unavailable
from jobs.models import Job, Queue, Schedule, Worker
from jobs.observability import metrics, stats
from jobs.routers import reads_from_replica

logger = logging.getLogger(__name__)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The job's current status does not allow this."
    default_code = "conflict"


def _conflict(refused: TransitionRefused) -> APIException:
    if refused.current is None:
        return NotFound(str(refused))
    return Conflict(str(refused))


TRANSITION_RESPONSES = {200: JobSerializer, 409: error_response("409")}
KEY_HELD_DETAIL = "An unfinished job already holds this idempotency_key."
KEY_HELD = (
    "An unfinished job holds the idempotency_key and the caller may not view jobs: "
    "`id` names the job, nothing else of it is shown (or the key is contended: retry)."
)


class JobViewSet(
    ListDefaults,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Submit jobs, follow them, and change their status."""

    queryset = Job.objects.all()
    serializer_class = JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "updated_at", "priority", "status", "queue", "task"]
    ordering = ["-created_at"]
    action_permissions = {"delete_many": "delete"}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "Link",
                str,
                OpenApiParameter.HEADER,
                response=[200],
                description='Further pages (RFC 8288): <url>; rel="next", <url>; rel="prev".',
            )
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """List jobs, newest first, as a JSON array; follow the ``Link`` header for more."""
        return super().list(request, *args, **kwargs)

    def get_serializer_class(self) -> type:
        if self.action == "retrieve":
            return JobDetailSerializer
        if self.action == "set_status":
            return JobStatusSerializer
        return JobSerializer

    def get_queryset(self) -> Any:
        if self.action == "retrieve":
            return Job.objects.prefetch_related("history")
        return Job.objects.all()

    @extend_schema(
        responses={
            201: JobSerializer,
            200: JobSerializer,
            409: OpenApiResponse(ErrorSerializer, description=KEY_HELD),
        }
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Queue a job; for a known unfinished ``idempotency_key``, return that job (200)
        to a caller who may view jobs, and only its id (409) to one who may not.

        A JSON array of jobs queues them all or none, in one transaction (``COPY`` on
        PostgreSQL, multi-row INSERTs on SQLite): 201 with the array.
        """
        if isinstance(request.data, list):
            return self._create_many(request.data)
        serializer = JobSerializer.shared(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            job, created = lifecycle.enqueue(**serializer.validated_data)
        except TransitionRefused as exc:
            raise Conflict(str(exc)) from None
        if not created and not request.user.has_perm("jobs.view_job"):
            # Someone else's job, maybe: its contents are for those who may view it.
            body = {"detail": KEY_HELD_DETAIL, "code": "conflict", "id": str(job.pk)}
            return Response(body, status=status.HTTP_409_CONFLICT)
        return Response(
            JobSerializer.shared(job).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def _create_many(self, items: Sequence[Any]) -> Response:
        if not 1 <= len(items) <= conf.MAX_BULK:
            raise ValidationError(f"send between 1 and {conf.MAX_BULK} jobs at once")
        jobs = None
        if (specs := plain_jobs(items)) is not None:
            # The common case, without the serializer's per-field work; on an error,
            # the serializer below names it.
            with contextlib.suppress(InvalidJob):
                jobs = lifecycle.enqueue_many(specs)
        if jobs is None:
            serializer = JobSerializer(data=items, many=True)
            serializer.is_valid(raise_exception=True)
            if keyed := [
                f"{index}.idempotency_key"
                for index, spec in enumerate(serializer.validated_data)
                if spec.get("idempotency_key")
            ]:
                raise ValidationError({key: ["not supported in a bulk create"] for key in keyed})
            jobs = lifecycle.enqueue_many(serializer.validated_data)
        return Response(JobSerializer(jobs, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=TRANSITION_RESPONSES)
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete a job and answer with it, as it was; a running job is a 409 (cancel it
        first), as in the admin."""
        job = self.get_object()
        return self._transition(lifecycle.delete, job_id=job.pk)

    @extend_schema(request=JobStatusSerializer, responses=TRANSITION_RESPONSES)
    @action(detail=True, methods=["patch"], url_path="status", url_name="status")
    def set_status(self, request: Request, pk: str | None = None) -> Response:
        """Change a job's status by hand, through the lifecycle's rules (409 if refused)."""
        job = self.get_object()
        serializer = JobStatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self._transition(lifecycle.set_status, job_id=job.pk, **serializer.validated_data)

    @extend_schema(request=None, responses=TRANSITION_RESPONSES)
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str | None = None) -> Response:
        """Run the job now, in this request, as a worker would; answer with the result."""
        job = self.get_object()
        return self._transition(runner.run_now, job_id=job.pk)

    @extend_schema(request=None, responses=TRANSITION_RESPONSES)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a queued, waiting or running job."""
        job = self.get_object()
        return self._transition(lifecycle.cancel, job_id=job.pk)

    @extend_schema(request=None, responses=TRANSITION_RESPONSES)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Put a failed, cancelled or done job back in the queue."""
        job = self.get_object()
        return self._transition(lifecycle.retry, job_id=job.pk)

    @extend_schema(
        operation_id="api_jobs_retry_many",
        request=BulkRetrySerializer,
        responses={200: BulkResultSerializer},
    )
    @action(detail=False, methods=["post"], url_path="retry", url_name="retry-many")
    def retry_many(self, request: Request) -> Response:
        """Requeue many jobs: ``{"ids": [...]}`` (at most JOBS_MAX_BULK), a filter over the
        failure queue (``{"status": "failed", "queue": ..., "task": ..., "error_class": ...,
        "finished_after": ...}``, status defaulting to failed), or ``{"all": true}`` for the
        whole failure queue; an empty body is a 400. Every matching job, in batches of
        JOBS_MAX_BULK. Answers how many changed and, by status, how many were skipped."""
        return self._apply_to_all(BulkRetrySerializer(data=request.data))

    @extend_schema(
        operation_id="api_jobs_cancel_many",
        request=BulkCancelSerializer,
        responses={200: BulkResultSerializer},
    )
    @action(detail=False, methods=["post"], url_path="cancel", url_name="cancel-many")
    def cancel_many(self, request: Request) -> Response:
        """Cancel many queued, waiting or running jobs: ``{"ids": [...]}``, a filter (``status``,
        ``queue``, ``task``, ``error_class``, ``finished_after``), or ``{"all": true}``; an
        empty body is a 400. A running job's worker finds it cancelled at its next
        heartbeat. Answers how many changed and, by status, how many were skipped."""
        return self._apply_to_all(BulkCancelSerializer(data=request.data))

    @extend_schema(
        operation_id="api_jobs_delete_many",
        request=BulkDeleteSerializer,
        responses={200: BulkResultSerializer},
    )
    @action(detail=False, methods=["post"], url_path="delete", url_name="delete-many")
    def delete_many(self, request: Request) -> Response:
        """Delete many jobs that are not running: ``{"ids": [...]}``, a filter, or
        ``{"all": true}``; an empty body is a 400. Running jobs are skipped (cancel them
        first). Answers how many were deleted and, by status, how many were skipped."""
        return self._apply_to_all(BulkDeleteSerializer(data=request.data))

    def _apply_to_all(self, serializer: BulkSelectionSerializer) -> Response:
        serializer.is_valid(raise_exception=True)
        result = lifecycle.apply_to_all(verb=serializer.verb, jobs=serializer.selection())
        return Response(
            {"changed": result.changed, "skipped": result.skipped, "batches": result.batches}
        )

    def _transition(self, verb: Any, **kwargs: Any) -> Response:
        try:
            job = verb(**kwargs)
        except TransitionRefused as refused:
            raise _conflict(refused) from None
        return Response(JobSerializer.shared(job).data)


class TaskViewSet(ApiDefaults, viewsets.ViewSet):
    """The registered tasks a job may name, with their defaults and payload schema."""

    serializer_class = TaskSerializer
    lookup_value_regex = r"[^/]+"
    required_permissions: list[str] = []  # any signed-in user may read the task list

    @extend_schema(responses={200: TaskSerializer(many=True)})
    def list(self, request: Request) -> Response:
        specs = sorted(tasks.registered().values(), key=lambda spec: spec.name)
        return Response(TaskSerializer(specs, many=True).data)

    @extend_schema(responses={200: TaskSerializer})
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        spec = tasks.registered().get(pk or "")
        if spec is None:
            raise NotFound(f"No task named {pk!r}.")
        return Response(TaskSerializer(spec).data)


class WorkerViewSet(ListDefaults, viewsets.ReadOnlyModelViewSet):
    """The worker registry: one row per running ``runworker`` process, live or presumed dead."""

    queryset = Worker.objects.all()
    serializer_class = WorkerSerializer
    pagination_class = None
    filter_backends: list = []


class QueueViewSet(ApiDefaults, viewsets.GenericViewSet):
    """Queues' flow control and usage; pause and resume a queue.

    Lists the queues named in ``JOBS_QUEUES`` or stored (paused once, or edited in
    the admin); any valid queue name can be read, paused and resumed.
    """

    queryset = Queue.objects.all()
    serializer_class = QueueSerializer
    pagination_class = None
    filter_backends: list = []
    lookup_field = "name"
    lookup_value_regex = lifecycle.QUEUE_NAME.pattern

    def list(self, request: Request) -> Response:
        return Response([QueueSerializer(name).data for name in lifecycle.all_limits()])

    def retrieve(self, request: Request, name: str) -> Response:
        return Response(QueueSerializer(name).data)

    @extend_schema(request=None, responses={200: QueueSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, name: str) -> Response:
        """Stop workers claiming this queue's jobs (running ones finish)."""
        lifecycle.pause_queue(name=name)
        return Response(QueueSerializer(name).data)

    @extend_schema(request=None, responses={200: QueueSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, name: str) -> Response:
        """Let workers claim this queue's jobs again; idle workers wake at once."""
        lifecycle.resume_queue(name=name)
        return Response(QueueSerializer(name).data)


SCHEDULE_WRITE = extend_schema(responses={200: ScheduleSerializer, 409: error_response("409")})


@extend_schema_view(
    create=extend_schema(responses={201: ScheduleSerializer, 409: error_response("409")}),
    update=SCHEDULE_WRITE,
    partial_update=SCHEDULE_WRITE,
)
class ScheduleViewSet(ListDefaults, viewsets.ModelViewSet):
    """Create, list, change and delete recurring jobs; run one now.

    A name another schedule has is a 409.
    """

    queryset = Schedule.objects.all()
    serializer_class = ScheduleSerializer
    filterset_class = ScheduleFilter
    ordering_fields = ["name", "next_fire_at", "last_fire_at", "created_at"]
    ordering = ["name"]

    def perform_create(self, serializer: ScheduleSerializer) -> None:
        self._save(serializer)

    def perform_update(self, serializer: ScheduleSerializer) -> None:
        self._save(serializer)

    def _save(self, serializer: ScheduleSerializer) -> None:
        try:
            serializer.save()
        except NameTaken as exc:
            raise Conflict(str(exc)) from None

    @extend_schema(request=None, responses={201: JobSerializer, 409: error_response("409")})
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str | None = None) -> Response:
        """Queue a job from this schedule now, outside its timetable (201, the job)."""
        schedule = self.get_object()
        try:
            job = schedules.run_now(schedule_id=schedule.pk)
        except InvalidJob as exc:
            # The request is fine; the stored schedule no longer makes a valid job.
            raise Conflict(f"This schedule's job is invalid: {exc}") from None
        return Response(JobSerializer.shared(job).data, status=status.HTTP_201_CREATED)


class StatsView(ApiDefaults, APIView):
    """Queue statistics: counts by status and queue, lag, recent throughput, live workers.

    Queued and processing counts, lag and the 1/5/60-minute numbers are exact; a
    finished status's count is exact where it says ``"exact": true`` (below
    ``JOBS_STATS_EXACT_LIMIT``), a PostgreSQL estimate where it says false.
    """

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: StatsSerializer})
    @method_decorator(reads_from_replica)
    def get(self, request: Request) -> Response:
        return Response(StatsSerializer(stats.snapshot()).data)


@read_only
@reads_from_replica
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """Serve Prometheus metrics; 404 when disabled, 401 without the configured bearer token,
    501 when ``prometheus_client`` (the ``metrics`` extra) is not installed."""
    if not conf.METRICS_ENABLED:
        return json_error(404, "Metrics are disabled (JOBS_METRICS_ENABLED).")
    token = conf.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            refused = json_error(
                401, "A valid bearer token is needed (Authorization: Bearer <JOBS_METRICS_TOKEN>)."
            )
            refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return refused
    try:
        body, content_type = metrics.render(request.headers.get("Accept", ""))
    except metrics.MetricsUnavailable as exc:
        return json_error(501, str(exc))
    return HttpResponse(body, content_type=content_type)


@read_only
def health(request: HttpRequest) -> HttpResponse:
    """Answer 200 when the database answers, 503 when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        # Public endpoint: the reason goes to the log, not to whoever asks.
        response = JsonResponse({"status": "error", "database": "unreachable"}, status=503)
        if database_unavailable(exc):
            log_unavailable(request, response, exc)  # an outage: one line, no traceback
        else:
            logger.exception("health check: database unreachable")
        return response
    return JsonResponse({"status": "ok", "database": connection.vendor})
