"""Answering while the database cannot be reached: 503 with ``Retry-After``, never a 500.

A database that is down, restarting or refusing connections is an outage, not a
bug: a client should retry. ``DatabaseUnavailableMiddleware`` (in ``MIDDLEWARE``)
answers a view's connection-level database error (``jobs.exceptions.
database_unavailable``) with a 503: the API's JSON error shape (code
``database_unavailable``) under ``/api/``, for ``/metrics`` and for a client that
asks for JSON, a short readable page elsewhere (the admin). ``server_error``
(``handler500``) does the same for such an error raised outside a view (in a
middleware), when ``DEBUG`` is off. Either logs one WARNING
line, without a traceback; every other exception stays a 500. DRF views answer the
same 503 through ``jobs.api.errors.exception_handler``.
"""

import sys
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseServerError, JsonResponse
from django.template.loader import render_to_string
from django.views.defaults import server_error as django_server_error

from jobs.api.errors import (
    API_PREFIX,
    RETRY_AFTER,
    DatabaseUnavailable,
    error_body,
    log_unavailable,
)
from jobs.exceptions import database_unavailable


def _for_programs(request: HttpRequest) -> bool:
    """The API, ``/metrics``, or a client asking for JSON rather than a page."""
    accept = request.headers.get("Accept", "")
    return (
        request.path_info.startswith(API_PREFIX)
        or request.path_info.rstrip("/") == "/metrics"
        or ("application/json" in accept and "text/html" not in accept)
    )


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 for ``exc``, a connection-level database error, logged once."""
    if _for_programs(request):
        response: HttpResponse = JsonResponse(error_body(DatabaseUnavailable()), status=503)
    else:
        # Rendered without the request: context processors would query the database.
        page = render_to_string("jobs/database_unavailable.html", {"retry_after": RETRY_AFTER})
        response = HttpResponse(page, status=503)
    log_unavailable(request, response, exc)
    return response


class DatabaseUnavailableMiddleware:
    """Answer a view's connection-level database error with a 503 (see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        return unavailable_response(request, exc) if database_unavailable(exc) else None


def server_error(request: HttpRequest) -> HttpResponse | HttpResponseServerError:
    """``handler500``: a 503 when the unhandled error is an unreachable database."""
    exc = sys.exc_info()[1]
    if exc is not None and database_unavailable(exc):
        return unavailable_response(request, exc)
    return django_server_error(request)
