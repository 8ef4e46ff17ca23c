from django.urls import re_path
from rest_framework.routers import APIRootView, DefaultRouter

from jobs.api.defaults import ApiDefaults
from jobs.api.views import (
    JobViewSet,
    QueueViewSet,
    ScheduleViewSet,
    StatsView,
    TaskViewSet,
    WorkerViewSet,
)


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

urlpatterns = [
    re_path(r"^stats/?$", StatsView.as_view(), name="stats"),
    *router.urls,
]
