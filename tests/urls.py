"""The project's URLs plus an API view that fails, to test the 500 answer."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from jobqueue.urls import urlpatterns as project_urlpatterns


def boom(request: HttpRequest) -> HttpResponse:
    """Fail as an unexpected bug would."""
    raise RuntimeError("secret internals")


urlpatterns = [path("api/boom", boom), *project_urlpatterns]
