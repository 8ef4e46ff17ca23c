"""One JSON error shape for every API error, whatever raised it.

Every 4xx and 5xx answer under ``/api/`` is::

    {"detail": "<one readable sentence>", "code": "<machine code>",
     "errors": {"<field>": ["<message>", ...]}}    # "errors" only for invalid input

DRF's own exceptions pass through ``exception_handler``; everything Django answers
by itself (unknown URLs, oversized bodies, server errors, with ``DEBUG`` on or off)
is rewritten by ``ApiErrorMiddleware``, so an API client never gets an HTML page
or a traceback.
"""

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.exceptions import InvalidInput, flatten_errors

API_PREFIX = "/api/"
# The codes DRF uses for the same statuses, so a client sees one code per status.
CODES = {
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    500: "internal_server_error",
}


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer (documented in the OpenAPI schema)."""

    detail = serializers.CharField(help_text="What went wrong, in one sentence.")
    code = serializers.CharField(help_text="A stable machine-readable code, e.g. not_found.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For invalid input: messages per field ('field.sub' for nested values).",
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


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


class ApiErrorMiddleware:
    """Cap API request bodies and turn any non-JSON API error into the error shape.

    Put it first in ``MIDDLEWARE``, so it also sees the answers Django builds
    for unknown URLs, disallowed hosts and unhandled exceptions.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX):
            return self.get_response(request)
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
