"""The OpenAPI schema, with the error answers every operation can give.

drf-spectacular documents success answers only. ``AutoSchema`` adds the error
answers (all in the shape of ``ErrorSerializer``) that the project's settings
make possible for each operation, so clients and the fuzzer know them.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from jobs import tasks
from jobs.api.errors import ErrorSerializer
from jobs.api.payload_schema import JSON_VALUE_REF, NO_NUL, task_branches
from jobs.api.serializers import BULK_FILTERS
from jobs.conf import conf

ERRORS = {
    "400": "Invalid input: see `errors` for the messages per field.",
    "401": "No credentials, or wrong ones.",
    "403": "Authenticated, but without the model permission this operation needs.",
    "404": "No such object (also for a malformed id).",
    "406": "None of the media types in `Accept` can be served.",
    "409": "Conflicts with the current state: the job's status does not allow this, or "
    "another schedule has this name.",
    "413": "The request body (or the payload) is too large.",
    "415": "The request body's media type is not accepted.",
    "429": "Too many writes: wait `Retry-After` seconds.",
    "503": "The database cannot be reached for a moment (code `database_unavailable`): "
    "retry after `Retry-After` seconds.",
}


def error_response(code: str) -> OpenApiResponse:
    """Describe an error answer in the common error shape."""
    return OpenApiResponse(ErrorSerializer, description=ERRORS[code])


# A string schema with one of these already excludes NUL characters (or leaves it to them).
SAYS_MORE = {"pattern", "format", "enum", "anyOf", "oneOf", "$ref"}


class AutoSchema(SpectacularAutoSchema):
    """Add the common error answers to every operation."""

    def _error_codes(self) -> list[str]:
        codes = ["401", "403", "406", "503"]
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

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction != "request":
            return schema
        for name, field in serializer.fields.items():
            prop = schema["properties"].get(name, {})
            # DRF's CharField refuses NUL characters ("Null characters are not allowed.").
            if isinstance(field, serializers.CharField) and not SAYS_MORE & set(prop):
                prop |= NO_NUL
        # A request serializer may state what its validate() enforces across fields.
        schema.update(getattr(serializer, "request_schema", {}))
        return schema

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(error_response(code), code)
        return dict(sorted(responses.items()))


BLANK = {"type": "string", "maxLength": 0}

# Any JSON value the server stores: no NUL characters (PostgreSQL's jsonb cannot hold
# them), in strings or in keys. Size and depth caps are stated in the description.
JSON_VALUE = {
    "description": "Any JSON value without NUL characters; at most JOBS_MAX_PAYLOAD_BYTES "
    "(default 256 KiB) as compact JSON, nested at most 100 levels.",
    "anyOf": [
        {"type": "string", **NO_NUL},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": JSON_VALUE_REF},
        {"type": "object", "propertyNames": NO_NUL, "additionalProperties": JSON_VALUE_REF},
    ],
}

# Strings whose rules are a format JSON Schema does not define (the fuzzer's hooks generate
# them); lengths and patterns beside it would only get in the way of generators that honour
# the format.
CRON = {
    "type": "string",
    "format": "cron",
    "description": "Five fields (minute hour day month weekday), or six with seconds first, "
    "naming a time that exists (not February 30th); at most 200 characters.",
}
TIME_ZONE = {
    "type": "string",
    "format": "iana-time-zone",
    "description": "An IANA time zone name, e.g. UTC or Europe/Paris.",
}


# A bulk verb names its jobs: an empty body is refused, never "everything".
BULK_SELECTION = {
    "anyOf": [
        *({"required": [name]} for name in sorted({"ids", *BULK_FILTERS})),
        {"required": ["all"], "properties": {"all": {"const": True}}},
    ]
}


def document_requests(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Document what the request serializers accept beyond what drf-spectacular infers.

    A postprocessing hook: lists the registered task names as the choices of
    ``task`` (so tasks registered after start-up are listed too), ties each task's
    payload rules to it (``payload_schema``), closes request bodies
    (``additionalProperties: false``), since the serializers refuse unknown fields,
    documents the bulk form of ``POST /api/jobs``, and links created jobs and
    schedules to their operations.
    """
    schemas = result.get("components", {}).get("schemas", {})
    for component in schemas.values():
        _fix_alternatives(component)
    for name, component in schemas.items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    schemas["JsonValue"] = JSON_VALUE
    for verb in ("Retry", "Cancel", "Delete"):
        if f"Bulk{verb}Request" in schemas:
            schemas[f"Bulk{verb}Request"] |= BULK_SELECTION
        bulk = result.get("paths", {}).get(f"/api/jobs/{verb.lower()}/", {}).get("post", {})
        if "requestBody" in bulk:
            bulk["requestBody"]["required"] = True  # no body is no selection: a 400
    for name in ("JobRequest", "WorkflowJobRequest", "ScheduleRequest", "PatchedScheduleRequest"):
        if name in schemas:
            _tie_payload_to_task(schemas[name], together=name.startswith("Patched"))
    for name in ("ScheduleRequest", "PatchedScheduleRequest"):
        if name in schemas:
            schemas[name]["properties"] |= {"cron": CRON, "timezone": TIME_ZONE}
    if jobs := schemas.get("WorkflowCreateRequest", {}).get("properties", {}).get("jobs"):
        jobs |= {"minItems": 1, "maxItems": conf.MAX_BULK}  # the list serializer's bounds
    claim = schemas.get("ClaimRequest", {})
    if external := sorted(tasks.external_names()):  # else every name is refused: a plain string
        claim.get("properties", {}).get("tasks", {}).get("items", {})["enum"] = external
    _document_bulk_create(result.get("paths", {}).get("/api/jobs/", {}).get("post", {}))
    _link_created(result, "/api/jobs/", JOB_OPERATIONS)
    _link_created(result, "/api/schedules/", SCHEDULE_OPERATIONS)
    _link_created(result, "/api/workflows/", WORKFLOW_OPERATIONS)
    return result


def _fix_alternatives(component: dict[str, Any]) -> None:
    for prop in component.get("properties", {}).values():
        # A nullable "any value" field: {} already admits null, and oneOf would
        # then match null twice, which is invalid.
        if {} in prop.get("oneOf", []):
            del prop["oneOf"]
        # drf-spectacular writes "a string matching the pattern, or empty" as a oneOf,
        # which "" fails whenever the pattern matches it too ("^...*$"): either is fine.
        if BLANK in prop.get("oneOf", []):
            prop["anyOf"] = prop.pop("oneOf")


def _tie_payload_to_task(component: dict[str, Any], *, together: bool) -> None:
    properties = component.get("properties", {})
    if "task" in properties:
        properties["task"]["enum"] = sorted(tasks.registered())
    if "payload" in properties:
        properties["payload"] = JSON_VALUE_REF
        component["anyOf"] = task_branches(together=together)
    if together:
        component["description"] = (
            "Send task and payload together (or neither): the payload is checked against the task."
        )


def _document_bulk_create(create: dict[str, Any]) -> None:
    """``POST /api/jobs`` also takes a JSON array of jobs (no idempotency keys), answering
    the array of created jobs."""
    body = create.get("requestBody", {}).get("content", {}).get("application/json", {})
    if "schema" not in body:
        return
    one = body["schema"]
    item = {"allOf": [one, {"properties": {"idempotency_key": {"enum": [None, ""]}}}]}
    many = {"type": "array", "items": item, "minItems": 1, "maxItems": conf.MAX_BULK}
    body["schema"] = {"oneOf": [one, many]}
    created = create.get("responses", {}).get("201", {}).get("content", {})
    if "application/json" in created:
        job = created["application/json"]["schema"]
        created["application/json"]["schema"] = {"oneOf": [job, {"type": "array", "items": job}]}


JOB_OPERATIONS = {
    "GetJob": "api_jobs_retrieve",
    "SetJobStatus": "api_jobs_status_partial_update",
    "RunJob": "api_jobs_run_create",
    "CancelJob": "api_jobs_cancel_create",
    "RetryJob": "api_jobs_retry_create",
    "DeleteJob": "api_jobs_destroy",
}
WORKFLOW_OPERATIONS = {
    "GetWorkflow": "api_workflows_retrieve",
    "CancelWorkflow": "api_workflows_cancel_create",
}
SCHEDULE_OPERATIONS = {
    "GetSchedule": "api_schedules_retrieve",
    "UpdateSchedule": "api_schedules_update",
    "ChangeSchedule": "api_schedules_partial_update",
    "RunSchedule": "api_schedules_run_create",
    "DeleteSchedule": "api_schedules_destroy",
}


def _link_created(result: dict[str, Any], path: str, operations: dict[str, str]) -> None:
    """Link a created object to what can be done with it (OpenAPI links, for clients and
    for stateful fuzzing)."""
    create = result.get("paths", {}).get(path, {}).get("post", {})
    links = {
        name: {"operationId": operation, "parameters": {"id": "$response.body#/id"}}
        for name, operation in operations.items()
    }
    for code in ("200", "201"):
        if code in create.get("responses", {}):
            create["responses"][code]["links"] = links
