"""The OpenAPI schema, with the error answers every operation can give.

drf-spectacular documents success answers only. ``AutoSchema`` adds the error
answers (all in the shape of ``ErrorSerializer``) that the project's settings
make possible for each operation, so clients and the fuzzer know them.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse

from jobs import tasks
from jobs.api.errors import ErrorSerializer

ERRORS = {
    "400": "Invalid input: see `errors` for the messages per field.",
    "401": "No credentials, or wrong ones.",
    "403": "Authenticated, but without the model permission this operation needs.",
    "404": "No such object (also for a malformed id).",
    "406": "None of the media types in `Accept` can be served.",
    "409": "The job's current status does not allow this.",
    "413": "The request body (or the payload) is too large.",
    "415": "The request body's media type is not accepted.",
    "429": "Too many writes: wait `Retry-After` seconds.",
}


def error_response(code: str) -> OpenApiResponse:
    """Describe an error answer in the common error shape."""
    return OpenApiResponse(ErrorSerializer, description=ERRORS[code])


class AutoSchema(SpectacularAutoSchema):
    """Add the common error answers to every operation."""

    def _error_codes(self) -> list[str]:
        codes = ["401", "403", "406"]
        writes = self.method in {"POST", "PUT", "PATCH", "DELETE"}
        has_body = self.method in {"POST", "PUT", "PATCH"}
        if has_body or self.get_filter_backends() or self._get_paginator():
            codes.append("400")
        if "{" in self.path:
            codes.append("404")
        if has_body:
            codes += ["413", "415"]
        if writes:
            codes.append("429")
        return codes

    def _get_request_for_media_type(self, serializer: Any, direction: Any = "request") -> Any:
        # drf-spectacular makes every PATCH body partial; some PATCH bodies are not.
        if self.method == "PATCH" and getattr(serializer, "partial_on_patch", True) is False:
            self.method = "PUT"
            try:
                return super()._get_request_for_media_type(serializer, direction)
            finally:
                self.method = "PATCH"
        return super()._get_request_for_media_type(serializer, direction)

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(error_response(code), code)
        return dict(sorted(responses.items()))


def document_tasks(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """List the registered task names as the choices of ``task`` in request bodies.

    A postprocessing hook, so tasks registered after start-up are listed too. It
    also closes request bodies (``additionalProperties: false``): the serializers
    refuse unknown fields.
    """
    schemas = result.get("components", {}).get("schemas", {})
    for name, component in schemas.items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    task = schemas.get("JobRequest", {}).get("properties", {}).get("task")
    if task is not None:
        task["enum"] = sorted(tasks.registered())
    return result
