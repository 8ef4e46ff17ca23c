"""Workflows over HTTP: ``POST /api/workflows`` creates a graph of jobs in one transaction;
``GET`` shows it (each job with its status and parents, and the overall state);
``POST /api/workflows/{id}/cancel`` cancels what has not started.

Thin over ``lifecycle.enqueue_workflow``, ``workflow_state`` and ``cancel_workflow``. The
permissions are the jobs' (``add_job`` to create, ``view_job`` to read, ``change_job`` to
cancel): a workflow is its jobs.
"""

from collections import defaultdict
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import lifecycle
from jobs.api.defaults import ListDefaults
from jobs.api.fields import ClosedSerializerMixin, StrictCharField, StrictRegexField
from jobs.api.serializers import JobSerializer
from jobs.conf import conf
from jobs.models import Dependency, Job, OnParentFailure, Status, Workflow

STEP = {
    "error_messages": {"invalid": "Use 1-100 letters, digits, '_', '.', ':' or '-'."},
}
STATES = ["running", "done", "failed", "cancelled"]


class WorkflowJobSerializer(JobSerializer):
    """One job of a workflow: a job (no idempotency key) with a name and its parents."""

    name = StrictRegexField(
        f"^{lifecycle.STEP_NAME.pattern}$",
        help_text="The job's name in the workflow, unique there; other jobs' `after` use it.",
        **STEP,
    )
    after = serializers.ListField(
        child=StrictRegexField(f"^{lifecycle.STEP_NAME.pattern}$", **STEP),
        required=False,
        max_length=conf.MAX_BULK,
        help_text="Names of the jobs this one waits for: it is queued once they have all "
        "ended, with their outcomes in `parent_results`.",
    )
    on_parent_failure = serializers.ChoiceField(
        OnParentFailure.choices,
        required=False,
        help_text="When a parent fails, is cancelled or deleted: cancel this job (default, "
        "with its own dependents) or run it anyway.",
    )

    class Meta(JobSerializer.Meta):
        fields = [
            "name",
            "after",
            "on_parent_failure",
            *(f for f in JobSerializer.Meta.fields if f != "idempotency_key"),
        ]


class WorkflowCreateSerializer(ClosedSerializerMixin, serializers.Serializer):
    """A workflow to create: its jobs, each naming the jobs it waits for."""

    name = StrictCharField(required=False, allow_blank=True, max_length=lifecycle.MAX_WORKFLOW_NAME)
    jobs = WorkflowJobSerializer(many=True, min_length=1, max_length=conf.MAX_BULK)


class WorkflowMemberSerializer(JobSerializer):
    """A job of a workflow as it is now, with its name, parents and their outcomes."""

    name = serializers.CharField(source="step", read_only=True)
    after = serializers.SerializerMethodField()
    waiting_for = serializers.SerializerMethodField(
        help_text="A waiting job's unfinished parents, as `name (status)`."
    )

    class Meta(JobSerializer.Meta):
        fields = ["name", "after", "waiting_for", *JobSerializer.Meta.fields]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_after(self, job: Job) -> list[str]:
        return self.context.get("parents", {}).get(job.pk, [])

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_waiting_for(self, job: Job) -> list[str]:
        return lifecycle.waiting_on(job) if job.status == Status.WAITING else []


class _CountsSerializer(serializers.Serializer):
    queued = serializers.IntegerField(required=False)
    processing = serializers.IntegerField(required=False)
    waiting = serializers.IntegerField(required=False)
    done = serializers.IntegerField(required=False)
    failed = serializers.IntegerField(required=False)
    cancelled = serializers.IntegerField(required=False)


class WorkflowSerializer(serializers.ModelSerializer):
    """A workflow: its overall state and its jobs' count by status."""

    state = serializers.ChoiceField(
        STATES,
        read_only=True,
        help_text="running while any job is unfinished; then done when all are done, "
        "failed when any failed, else cancelled.",
    )
    counts = _CountsSerializer(read_only=True, help_text="Its jobs by status (0s left out).")

    class Meta:
        model = Workflow
        fields = ["id", "name", "created_at", "state", "counts"]
        read_only_fields = fields

    def to_representation(self, workflow: Workflow) -> dict[str, Any]:
        found = lifecycle.workflow_state(workflow)
        workflow.state, workflow.counts = found["state"], found["counts"]
        return super().to_representation(workflow)


class WorkflowDetailSerializer(WorkflowSerializer):
    jobs = serializers.SerializerMethodField()

    class Meta(WorkflowSerializer.Meta):
        fields = [*WorkflowSerializer.Meta.fields, "jobs"]
        read_only_fields = fields

    @extend_schema_field(WorkflowMemberSerializer(many=True))
    def get_jobs(self, workflow: Workflow) -> list[dict[str, Any]]:
        jobs = list(workflow.jobs.order_by("created_at"))
        parents: dict[Any, list[str]] = defaultdict(list)
        edges = Dependency.objects.filter(child__workflow=workflow).order_by("id")
        for child, name in edges.values_list("child_id", "parent_name"):
            parents[child].append(name)
        return WorkflowMemberSerializer(jobs, many=True, context={"parents": parents}).data


class WorkflowViewSet(
    ListDefaults,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Create a graph of jobs at once; follow it; cancel what has not started."""

    queryset = Workflow.objects.all()
    permission_model = Job  # a workflow is its jobs: the job permissions apply
    serializer_class = WorkflowSerializer
    filter_backends: list = []
    ordering = ["-created_at"]

    def get_serializer_class(self) -> type:
        if self.action == "create":
            return WorkflowCreateSerializer
        if self.action in ("retrieve", "cancel"):
            return WorkflowDetailSerializer
        return WorkflowSerializer

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """List workflows, newest first, each with its state and its jobs' count by status."""
        page = self.paginate_queryset(Workflow.objects.all())
        ids = [workflow.pk for workflow in page]
        counted = {w.pk: w for w in lifecycle.with_counts(Workflow.objects.filter(pk__in=ids))}
        page = [counted[pk] for pk in ids]
        return self.get_paginated_response(WorkflowSerializer(page, many=True).data)

    @extend_schema(request=WorkflowCreateSerializer, responses={201: WorkflowDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Create every job of the graph in one transaction, or none: a cycle, an `after`
        naming no job, a name used twice or an invalid job is a 400 naming it
        (``jobs.2.after``). Jobs with parents are ``waiting``, the others ``queued``."""
        serializer = WorkflowCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        workflow = lifecycle.enqueue_workflow(jobs=data["jobs"], name=data.get("name", ""))
        return Response(WorkflowDetailSerializer(workflow).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The workflow's state and every job with its status, parents and outcome."""
        return Response(WorkflowDetailSerializer(self.get_object()).data)

    @extend_schema(request=None, responses={200: WorkflowDetailSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel the jobs that have not started (waiting or queued); running ones finish."""
        workflow = self.get_object()
        lifecycle.cancel_workflow(workflow_id=workflow.pk)
        return Response(WorkflowDetailSerializer(workflow).data)
