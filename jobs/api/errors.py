"""One JSON error shape for every API error, whatever raised it.

Every 4xx and 5xx answer under ``/api/`` is::

    {"detail": "<one readable sentence>", "code": "<machine code>",
     "errors": {"<field>": ["<message>", ...]}}    # "errors" only for invalid input

(and ``"id"`` of the holding job in the 409 for a known idempotency key).

DRF's own exceptions pass through ``exception_handler``; everything Django answers
by itself (unknown URLs, oversized bodies, server errors, with ``DEBUG`` on or off)
is rewritten by ``ApiErrorMiddleware``, so an API client never gets an HTML page
or a traceback.

A database that cannot be reached (down, restarting, refusing connections) is not
a bug: wherever it shows in a request (authentication, permissions, the view), the
answer is a 503 ``database_unavailable`` with ``Retry-After``, logged as one
WARNING line without a traceback (``database_unavailable``).
"""

from collections.abc import Callable
from functools import wraps
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.log import log_response
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.exceptions import InvalidInput, database_unavailable, flatten_errors

API_PREFIX = "/api/"
# Pages outside /api/ whose errors (a disallowed host, a wrong method) are in the shape too.
JSON_PAGES = ("/health", "/metrics", "/docs")
READ_METHODS = ("GET", "HEAD")
# The codes DRF uses for the same statuses, so a client sees one code per status.
CODES = {
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    500: "internal_server_error",
}
# Seconds a client waits before retrying a 503: a restarting database is back in a few.
RETRY_AFTER = 2


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class DatabaseUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable for a moment: retry after Retry-After seconds."
    default_code = "database_unavailable"


def log_unavailable(request: HttpRequest, response: HttpResponse, exc: BaseException) -> None:
    """Log a 503 for an unreachable database: one WARNING line, no traceback (and keep
    Django from logging the answer again as an error)."""
    response["Retry-After"] = str(RETRY_AFTER)
    log_response(
        "Database unavailable: %s %s: %s",
        request.method,
        request.path,
        " ".join(str(exc).split()),
        response=response,
        request=request,
        level="warning",
    )


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer (documented in the OpenAPI schema)."""

    detail = serializers.CharField(help_text="What went wrong, in one sentence.")
    code = serializers.CharField(help_text="A stable machine-readable code, e.g. not_found.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For invalid input: messages per field ('field.sub' for nested values).",
    )
    id = serializers.UUIDField(
        required=False,
        help_text="For a 409 on a known idempotency_key: the job that holds it.",
    )


def error_body(exc: exceptions.APIException) -> dict[str, Any]:
    """Return the error shape for a DRF exception."""
    if isinstance(exc, exceptions.ValidationError):
        errors = {k: v for k, v in flatten_errors(exc.detail).items() if v}
        errors = errors or {"non_field_errors": ["Invalid input."]}
        field, messages = next(iter(errors.items()))
        where = "" if field == "non_field_errors" else f"{field}: "
        detail = f"Invalid input. {where}{messages[0]}"
        return {"detail": detail, "code": "invalid", "errors": errors}
    detail = exc.detail
    code = getattr(detail, "code", None) or exc.default_code
    return {"detail": str(detail), "code": str(code)}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer DRF and Django request errors in the one error shape (``EXCEPTION_HANDLER``)."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(str(exc))
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ParseError(str(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, InvalidInput):
        # The core's own refusal of a job or schedule: invalid input, field by field.
        exc = exceptions.ValidationError(exc.errors)
    elif database_unavailable(exc):
        response = drf_exception_handler(DatabaseUnavailable(), context)
        response.data = error_body(DatabaseUnavailable())
        log_unavailable(context["request"], response, exc)
        return response
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        response.data = error_body(exc)
    return response


def json_error(status_code: int, detail: str | None = None) -> JsonResponse:
    """Build an error answer for a status code Django produced on its own."""
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "Error"
    code = CODES.get(status_code) or phrase.lower().replace(" ", "_").replace("-", "_")
    body = {"detail": detail or f"{phrase}.", "code": code}
    return JsonResponse(body, status=status_code)


def read_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve GET and HEAD; answer any other method with a 405 in the error shape.

    For plain Django views (``/health``, ``/metrics``). Exempt from CSRF: the view
    serves no unsafe method, and the CSRF check would otherwise answer a POST
    first, with an HTML page.
    """

    @csrf_exempt
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in READ_METHODS:
            response = json_error(405, f'Method "{request.method}" not allowed.')
            response["Allow"] = ", ".join(READ_METHODS)
            return response
        return view(request, *args, **kwargs)

    return wrapped


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


def _unread_chunked_body(request: HttpRequest) -> bool:
    """A chunked body without a length: Django reads bodies by ``CONTENT_LENGTH`` only.

    ``jobqueue.wsgi.ChunkedBodies`` gives gunicorn's chunked bodies their length;
    one that reaches Django without it (another server, ASGI) cannot be read.
    """
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    return chunked and not request.META.get("CONTENT_LENGTH")


class ApiErrorMiddleware:
    """Cap API request bodies and turn any non-JSON error of the API, ``/health``,
    ``/metrics`` and ``/docs`` into the error shape.

    A chunked body Django cannot read is a 411 on every path, never an empty body.

    Put it first in ``MIDDLEWARE``, so it also sees the answers Django builds
    for unknown URLs, disallowed hosts and unhandled exceptions.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _unread_chunked_body(request):
            # Django would read it as empty: a retry of "these ids" would become "all".
            return json_error(411, "A chunked body cannot be read here: send a Content-Length.")
        path = request.path_info
        if not path.startswith(API_PREFIX):
            if path.rstrip("/") not in JSON_PAGES:
                return self.get_response(request)
        else:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if limit is not None and length > limit:
                return json_error(413, f"The request body is larger than {limit} bytes.")
        response = self.get_response(request)
        # DRF answers (JSON, or the browsable API a browser asked for) are left alone.
        if response.status_code >= 400 and not isinstance(response, Response):
            if not _is_json(response):
                return json_error(response.status_code)
        return response
