"""Each task's payload rules, stated in the OpenAPI document.

A job (or schedule) naming ``send_email`` must carry a payload that task accepts;
a generic ``payload: any`` would promise more than the server takes. So the
request schemas get one ``anyOf`` branch per task whose payload schema is exact
(``TaskSpec.json_schema``): that task with such a payload. Tasks without an
exact schema share one branch, any JSON value. Every branch also carries the
rules of every payload (``JsonValue``: no NUL characters), which a task's own
schema does not repeat.
"""

from typing import Any

from jobs import tasks
from jobs.exceptions import InvalidPayload

JSON_VALUE_REF = {"$ref": "#/components/schemas/JsonValue"}
NO_NUL = {"pattern": "^[^\\u0000]*$"}
ABSENT = {"not": {}}  # as a property's schema: the property may not be sent
_NESTED = ("items", "additionalProperties")  # not "not": the rules would turn over
_LISTS = ("anyOf", "oneOf", "allOf")


def with_payload_rules(schema: Any) -> Any:
    """Return a task's payload schema with the rules of every payload added."""
    if schema is True or schema == {}:
        return JSON_VALUE_REF
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _NESTED:
        if isinstance(out.get(key), dict | bool) and out[key] is not False:
            out[key] = with_payload_rules(out[key])
    for key in _LISTS:
        if key in out:
            out[key] = [with_payload_rules(branch) for branch in out[key]]
    if "properties" in out:
        out["properties"] = {k: with_payload_rules(v) for k, v in out["properties"].items()}
    kind = out.get("type")
    if kind == "object":
        out.setdefault("additionalProperties", JSON_VALUE_REF)
        out.setdefault("propertyNames", NO_NUL)
    elif kind == "array":
        out.setdefault("items", JSON_VALUE_REF)
    elif kind == "string" and not {"pattern", "format", "enum", "const", "not"} & set(out):
        out |= NO_NUL
    return out


def _takes_null(spec: tasks.TaskSpec) -> bool:
    try:
        spec.validate_payload(None)
    except InvalidPayload:
        return False
    return True


def task_branches(*, together: bool = False) -> list[dict[str, Any]]:
    """The ``anyOf`` branches tying ``payload`` to ``task`` in a request body.

    ``together``: for a partial update, which changes task and payload together
    or neither (the payload is checked against the task).
    """
    free, branches = [], []
    for name, spec in sorted(tasks.registered().items()):
        schema = spec.json_schema()
        if schema is None:
            free.append(name)
            continue
        branch: dict[str, Any] = {
            "properties": {"task": {"const": name}, "payload": with_payload_rules(schema)},
            "required": ["task"] if _takes_null(spec) and not together else ["task", "payload"],
        }
        branches.append(branch)
    any_task: dict[str, Any] = {"properties": {"task": {"enum": free}}}
    if together:
        any_task["required"] = ["task", "payload"]
        branches.append({"properties": {"task": ABSENT, "payload": ABSENT}})
    return [any_task, *branches]
