"""The built-in ``http_request`` task: call a webhook or a third-party API.

Only hosts listed in ``JOBS_HTTP_ALLOWED_HOSTS`` are called (nothing by
default; ``*`` allows every host), checked when the job is created and again
before every request. Redirects are followed only to the same host, at most
``MAX_REDIRECTS`` times. The response body is read up to
``JOBS_HTTP_MAX_RESPONSE_BYTES`` and cut there (``truncated`` says so).

Outcome: an expected status (``expected_status``, default any 2xx) succeeds;
5xx, 408, 429 and network errors raise ``RetryableHTTPError`` or the network
error, so the job is retried with backoff; any other status (4xx, an
unfollowed redirect) fails the job at once.
"""

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.http.request import validate_host
from rest_framework import serializers

from jobs.conf import conf
from jobs.exceptions import JobsError, PermanentFailure
from jobs.tasks import register

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}
RETRYABLE = {408, 429}


class RetryableHTTPError(JobsError):
    """The server answered with a status worth retrying (5xx, 408, 429)."""


def check_url(url: str) -> str:
    """Return the URL's host if it is http(s) and the host is allowed; else raise ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("Use an absolute http:// or https:// URL.")
    host = parts.hostname.lower()
    if not validate_host(host, conf.HTTP_ALLOWED_HOSTS):
        raise ValueError(f"Host {host!r} is not in JOBS_HTTP_ALLOWED_HOSTS.")
    return host


# The characters a regular expression must escape (ECMA-262, as JSON Schema's patterns).
SYNTAX = set("^$\\.*+?()[]{}|/")


def _anycase(text: str) -> str:
    """``text`` as a regular expression matching it in any letter case (JSON Schema
    patterns have no case-insensitive flag)."""
    return "".join(
        f"[{char.lower()}{char.upper()}]"
        if char.isalpha()
        else f"\\{char}"
        if char in SYNTAX
        else char
        for char in text
    )


def url_pattern(allowed_hosts: list[str]) -> str | None:
    """A pattern for the URLs ``check_url`` accepts for ``allowed_hosts`` (None: no URL is).

    Written for the API's schema: it matches the usual form (scheme, host name,
    optional port, path), every one of which ``check_url`` accepts.
    """
    name = r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*"  # any host name, for a wildcard
    hosts = []
    for host in allowed_hosts:
        if host == "*":
            hosts.append(name)
        elif host.startswith("."):
            hosts.append(rf"({name}\.)?{_anycase(host[1:])}")
        elif host:
            hosts.append(_anycase(host))
    if not hosts:
        return None
    return rf"^{_anycase('http')}[sS]?://({'|'.join(hosts)})(:[0-9]{{1,5}})?([/?#][^\u0000]*)?$"


class StatusList(serializers.ListField):
    """One status code or a list of them."""

    child = serializers.IntegerField(min_value=100, max_value=599)

    def to_internal_value(self, data: Any) -> list[int]:
        # 200.0 is the integer 200 in JSON, as IntegerField takes it: any single value.
        return super().to_internal_value(data if isinstance(data, list) else [data])


STATUS = {"type": "integer", "minimum": 100, "maximum": 599}


class HttpPayload(serializers.Serializer):
    method = serializers.ChoiceField(choices=METHODS, default="GET")
    url = serializers.CharField(max_length=2000, trim_whitespace=False)
    # An empty header value is a valid header; values are sent as given.
    headers = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), required=False
    )
    json = serializers.JSONField(required=False, allow_null=True)  # null: the JSON body null
    body = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    timeout = serializers.FloatField(required=False, min_value=0.1, max_value=300)
    expected_status = StatusList(required=False, allow_empty=False)

    def validate_url(self, value: str) -> str:
        try:
            check_url(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_headers(self, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if not name or any(char in name + header for char in "\r\n\0") or ":" in name:
                raise serializers.ValidationError(f"Header {name!r} is not a valid header.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "json" in attrs and "body" in attrs:
            raise serializers.ValidationError("Send either json or body, not both.")
        return attrs

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The payload as JSON Schema: the API documents it, and it holds payloads to
        strict JSON types and known keys. The URL's pattern follows JOBS_HTTP_ALLOWED_HOSTS."""
        pattern = url_pattern(conf.HTTP_ALLOWED_HOSTS)
        no_header_break = r"^[^\r\n\u0000]*$"
        return {
            "type": "object",
            "required": ["url"],
            "properties": {
                "method": {"enum": METHODS},
                "url": {"type": "string", "maxLength": 2000}
                | ({"pattern": pattern} if pattern else {"not": {}}),
                "headers": {
                    "type": "object",
                    "propertyNames": {"minLength": 1, "pattern": r"^[^:\r\n\u0000]*$"},
                    "additionalProperties": {"type": "string", "pattern": no_header_break},
                },
                "json": {},
                "body": {"type": "string"},
                "timeout": {"type": "number", "minimum": 0.1, "maximum": 300},
                "expected_status": {
                    "anyOf": [STATUS, {"type": "array", "items": STATUS, "minItems": 1}]
                },
            },
            "additionalProperties": False,
            # Not both json and body.
            "anyOf": [{"properties": {"json": False}}, {"properties": {"body": False}}],
        }


def _send(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
) -> tuple[int, dict[str, str], bytes, bool]:
    """Make one request; return status, headers, the body up to the cap, and whether it was cut."""
    parts = urlsplit(url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        cap = conf.HTTP_MAX_RESPONSE_BYTES
        data = response.read(cap + 1)
        response_headers: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            response_headers[key] = (
                f"{response_headers[key]}, {value}" if key in response_headers else value
            )
        return response.status, response_headers, data[:cap], len(data) > cap
    finally:
        connection.close()


def _request_body(data: dict[str, Any]) -> tuple[dict[str, str], bytes | None]:
    headers = {"User-Agent": "jobqueue", **data.get("headers", {})}
    if "json" in data:
        headers.setdefault("Content-Type", "application/json")
        return headers, json.dumps(data["json"]).encode()
    if "body" in data:
        return headers, data["body"].encode()
    return headers, None


@register("http_request", max_attempts=5, schema=HttpPayload)
def http_request(payload: dict[str, Any]) -> dict[str, Any]:
    """Make an HTTP request: {method, url, headers?, json? or body?, timeout?, expected_status?}."""
    serializer = HttpPayload(data=payload)
    if not serializer.is_valid():
        raise PermanentFailure(f"invalid payload: {serializer.errors}")
    data = serializer.validated_data
    method, url = data["method"], data["url"]
    headers, body = _request_body(data)
    timeout = data.get("timeout", conf.HTTP_TIMEOUT)
    for _ in range(MAX_REDIRECTS + 1):
        status, response_headers, content, truncated = _send(method, url, headers, body, timeout)
        location = response_headers.get("location")
        if status not in REDIRECTS or not location:
            break
        url = _follow(url, location)
        if status == 303 or (status in (301, 302) and method not in ("GET", "HEAD")):
            method, body = "GET", None
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    else:
        raise PermanentFailure(f"more than {MAX_REDIRECTS} redirects")
    result = {
        "status": status,
        "url": url,
        "headers": response_headers,
        "body": content.decode("utf-8", errors="replace"),
        "truncated": truncated,
    }
    _check_status(status, data.get("expected_status"), url, result["body"])
    return result


def _follow(url: str, location: str) -> str:
    """Return the redirect target if it stays on the same, still allowed, host."""
    target = urljoin(url, location)
    if urlsplit(target).hostname != urlsplit(url).hostname:
        raise PermanentFailure(f"redirect to another host refused: {target}")
    try:
        check_url(target)
    except ValueError as exc:
        raise PermanentFailure(f"redirect refused: {exc}") from None
    return target


def _check_status(status: int, expected: list[int] | None, url: str, body: str) -> None:
    if (status in expected) if expected else (200 <= status < 300):
        return
    message = f"HTTP {status} from {url}: {body[:200]}"
    if status >= 500 or status in RETRYABLE:
        raise RetryableHTTPError(message)
    raise PermanentFailure(message)
