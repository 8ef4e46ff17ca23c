from django.urls import re_path
from rest_framework.routers import APIRootView, DefaultRouter

from jobs.api import protocol
from jobs.api.defaults import ApiDefaults
from jobs.api.views import (
    JobViewSet,
    QueueViewSet,
    ScheduleViewSet,
    StatsView,
    TaskViewSet,
    WorkerViewSet,
)
from jobs.api.workflows import WorkflowViewSet


class APIRoot(ApiDefaults, APIRootView):
    """The list of API endpoints: any signed-in user may read it."""

    required_permissions: list[str] = []
    schema = None  # not an operation of the API (as in DRF's own root view)


router = DefaultRouter()
router.APIRootView = APIRoot
# Accept every path with and without its trailing slash (the prototype had none).
router.trailing_slash = "/?"
router.register("jobs", JobViewSet, basename="job")
router.register("tasks", TaskViewSet, basename="task")
router.register("workers", WorkerViewSet, basename="worker")
router.register("schedules", ScheduleViewSet, basename="schedule")
router.register("queues", QueueViewSet, basename="queue")
router.register("workflows", WorkflowViewSet, basename="workflow")

WORKER_JOB = r"^worker/jobs/(?P<pk>[^/]+)"

urlpatterns = [
    re_path(r"^stats/?$", StatsView.as_view(), name="stats"),
    re_path(r"^worker/claim/?$", protocol.ClaimView.as_view(), name="worker-claim"),
    re_path(r"^worker/heartbeat/?$", protocol.HeartbeatView.as_view(), name="worker-heartbeat"),
    re_path(r"^worker/release/?$", protocol.ReleaseView.as_view(), name="worker-release"),
    re_path(rf"{WORKER_JOB}/progress/?$", protocol.ProgressView.as_view(), name="worker-progress"),
    re_path(rf"{WORKER_JOB}/succeed/?$", protocol.SucceedView.as_view(), name="worker-succeed"),
    re_path(rf"{WORKER_JOB}/fail/?$", protocol.FailView.as_view(), name="worker-fail"),
    *router.urls,
]
