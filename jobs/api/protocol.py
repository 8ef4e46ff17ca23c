"""The HTTP worker protocol: remote workers, in any language, run external tasks.

A remote worker claims attempts (``POST /api/worker/claim``, long-polling while
none is due), renews their leases (``heartbeat``: the answer names attempts taken
away), and reports each outcome (``jobs/{id}/progress|succeed|fail``), or hands
attempts back (``release``). Every report names the attempt (the fencing token)
and is one fenced lifecycle call, the built-in worker's own: a stale report
(cancelled, recovered, moved, claimed again) changes nothing and is a 409.

Claims and heartbeats keep the worker's registry row (``GET /api/workers``)
fresh; claims also recover expired leases now and then, so remote workers alone
(no ``runworker``) get a killed worker's jobs back. The views need the
``jobs.work_job`` permission only, and are not rate limited by
``JOBS_WRITE_RATE``: a busy worker reports many times a second.
"""

import time
import uuid
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import lifecycle
from jobs.api import longpoll
from jobs.api.defaults import ApiDefaults
from jobs.api.protocol_serializers import (
    ClaimedJobSerializer,
    ClaimResponseSerializer,
    ClaimSerializer,
    FailSerializer,
    HeartbeatResponseSerializer,
    HeartbeatSerializer,
    OutcomeSerializer,
    ProgressSerializer,
    ReleaseResponseSerializer,
    ReleaseSerializer,
    SucceedSerializer,
)
from jobs.api.schema import error_response
from jobs.api.views import Conflict
from jobs.conf import conf
from jobs.exceptions import TransitionRefused
from jobs.models import Job, Worker

WORK = ["jobs.work_job"]
_next_recover = 0.0  # per web process: when claims next recover expired leases


class ProtocolView(ApiDefaults, APIView):
    required_permissions = WORK
    throttle_classes: list[Any] = []

    def body(self, serializer_class: type, request: Request) -> dict[str, Any]:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def _register(worker_id: str, **fields: Any) -> None:
    """Create or renew ``worker_id``'s registry row (a race to create it is settled once)."""
    now = timezone.now()
    for _ in range(2):
        if Worker.objects.filter(pk=worker_id).update(last_heartbeat_at=now, **fields):
            return
        try:
            with transaction.atomic():
                defaults = {"hostname": "", "pid": 0, "queues": [], "concurrency": 1}
                Worker.objects.create(
                    pk=worker_id, started_at=now, last_heartbeat_at=now, **(defaults | fields)
                )
            return
        except IntegrityError:
            continue  # created meanwhile by the worker's other request: renew it


def _recover_now_and_then() -> None:
    global _next_recover
    now = time.monotonic()
    if now >= _next_recover:
        _next_recover = now + conf.LEASE_SECONDS / 2
        lifecycle.recover()


class ClaimView(ProtocolView):
    """Claim up to ``limit`` due jobs of external ``tasks``, waiting up to ``wait`` seconds."""

    @extend_schema(
        request=ClaimSerializer,
        responses={200: ClaimResponseSerializer},
        operation_id="api_worker_claim",
    )
    def post(self, request: Request) -> Response:
        data = self.body(ClaimSerializer, request)
        worker_id, queues, names = data["worker_id"], data.get("queues") or None, data["tasks"]
        _register(
            worker_id,
            hostname=data["hostname"],
            pid=data["pid"],
            queues=queues or [],
            concurrency=data["limit"],
        )
        _recover_now_and_then()
        deadline = time.monotonic() + min(data["wait"], conf.WORKER_MAX_WAIT)
        while True:
            jobs = lifecycle.claim(
                worker_id=worker_id, queues=queues, limit=data["limit"], tasks=names
            )
            if jobs or not longpoll.wait_for_due(queues=queues, tasks=names, deadline=deadline):
                break
        if jobs:
            now = timezone.now()
            lifecycle.mark_started(worker_id=worker_id, starts=[(job, now) for job in jobs])
        lease = conf.LEASE_SECONDS
        for job in jobs:
            job.lease_seconds = lease
        return Response({"jobs": ClaimedJobSerializer(jobs, many=True).data})


class HeartbeatView(ProtocolView):
    """Renew the leases of the attempts this worker holds; name those taken away."""

    @extend_schema(
        request=HeartbeatSerializer,
        responses={200: HeartbeatResponseSerializer},
        operation_id="api_worker_heartbeat",
    )
    def post(self, request: Request) -> Response:
        data = self.body(HeartbeatSerializer, request)
        worker_id = data["worker_id"]
        _register(worker_id)
        asked = [(item["id"], item["attempt"]) for item in data["jobs"]]
        still = lifecycle.heartbeat(worker_id=worker_id, jobs=[Job(pk=pk) for pk, _ in asked])
        pairs = [{"id": pk, "attempt": attempt} for pk, attempt in asked]
        return Response(
            {
                "held": [pair for pair in pairs if (pair["id"], pair["attempt"]) in still],
                "taken": [pair for pair in pairs if (pair["id"], pair["attempt"]) not in still],
                "lease_expires_at": timezone.now() + timedelta(seconds=conf.LEASE_SECONDS),
            }
        )


class ReleaseView(ProtocolView):
    """Hand attempts back to the queue unfinished (a worker stopping gracefully)."""

    @extend_schema(
        request=ReleaseSerializer,
        responses={200: ReleaseResponseSerializer},
        operation_id="api_worker_release",
    )
    def post(self, request: Request) -> Response:
        data = self.body(ReleaseSerializer, request)
        held = [Job(pk=item["id"], attempts=item["attempt"]) for item in data["jobs"]]
        jobs = {job.pk: job for job in Job.objects.filter(pk__in=[j.pk for j in held])}
        for job in held:  # fence on the attempt the worker names, not the row's
            if job.pk in jobs:
                jobs[job.pk].attempts = job.attempts
        released = lifecycle.release(
            jobs=list(jobs.values()),
            worker_id=data["worker_id"],
            started=data["started"],
            reason="released by its remote worker",
        )
        return Response({"released": released})


REPORT_RESPONSES = {200: OutcomeSerializer, 409: error_response("409")}


class ReportView(ProtocolView):
    """A report on one attempt: fenced on (worker_id, attempt)."""

    def attempt(self, pk: Any, data: dict[str, Any]) -> Job:
        try:
            job = Job.objects.filter(pk=uuid.UUID(pk)).first()
        except ValueError:
            job = None
        if job is None:
            raise NotFound(f"No job {pk}.")
        job.attempts = data["attempt"]  # the fence: the attempt the worker holds
        return job

    def stale(self, job: Job, worker_id: str) -> Conflict:
        now = Job.objects.filter(pk=job.pk).values("status", "attempts", "worker_id").first()
        if now is None:
            return Conflict(f"Job {job.pk} was deleted; this report changed nothing.")
        return Conflict(
            f"Attempt {job.attempts} of job {job.pk} is no longer held by {worker_id} "
            f"(the job is {now['status']}, attempt {now['attempts']}, held by "
            f"{now['worker_id'] or 'nobody'}); this report changed nothing."
        )

    def outcome(self, job: Job, status: str) -> Response:
        return Response({"id": job.pk, "attempt": job.attempts, "status": status})


def _report(request_class: type, operation: str) -> Any:
    return extend_schema(request=request_class, responses=REPORT_RESPONSES, operation_id=operation)


class ProgressView(ReportView):
    """Record the attempt's progress (0..100, a message)."""

    @_report(ProgressSerializer, "api_worker_progress")
    def post(self, request: Request, pk: str) -> Response:
        data = self.body(ProgressSerializer, request)
        job = self.attempt(pk, data)
        recorded = lifecycle.report_progress(
            job=job, worker_id=data["worker_id"], percent=data["percent"], message=data["message"]
        )
        if not recorded:
            raise self.stale(job, data["worker_id"])
        return self.outcome(job, job.status)


class SucceedView(ReportView):
    """Record the attempt's success and its result: the job is done."""

    @_report(SucceedSerializer, "api_worker_succeed")
    def post(self, request: Request, pk: str) -> Response:
        data = self.body(SucceedSerializer, request)
        job = self.attempt(pk, data)
        try:
            lifecycle.succeed(job=job, worker_id=data["worker_id"], result=data["result"])
        except TransitionRefused:
            raise self.stale(job, data["worker_id"]) from None
        return self.outcome(job, job.status)


class FailView(ReportView):
    """Record the attempt's failure: retried with backoff while attempts remain (unless
    ``retry`` is false), else the job fails."""

    @_report(FailSerializer, "api_worker_fail")
    def post(self, request: Request, pk: str) -> Response:
        data = self.body(FailSerializer, request)
        job = self.attempt(pk, data)
        try:
            status = lifecycle.fail(
                job=job,
                worker_id=data["worker_id"],
                error=data["error"],
                traceback=data["traceback"] or None,
                retry=data["retry"],
            )
        except TransitionRefused:
            raise self.stale(job, data["worker_id"]) from None
        return self.outcome(job, status)
