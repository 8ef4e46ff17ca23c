"""WSGI entry point: ``gunicorn jobqueue.wsgi``."""

import io
import json
import os
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue.settings")

UNREAD_CHUNKED = "A chunked body cannot be read here: send a Content-Length."
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ChunkedBodies:
    """Hand Django a chunked request body with its length, or refuse the request.

    Django reads a body by its ``CONTENT_LENGTH``. A chunked body has none, so
    Django would take it as empty: a chunked ``POST /api/jobs`` would queue a
    default job, a chunked ``POST /api/jobs/retry`` would retry the whole failure
    queue. gunicorn de-chunks the body and says where it ends
    (``wsgi.input_terminated``), so it is read here to its end, at most
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes (413 beyond), and passed on with its
    length. A server that cannot say where the body ends gets a 411.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if environ.get("CONTENT_LENGTH") or not chunked:
            return self.app(environ, start_response)
        if not environ.get("wsgi.input_terminated"):
            return _refuse(start_response, HTTPStatus.LENGTH_REQUIRED, UNREAD_CHUNKED)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = _read(environ["wsgi.input"], None if limit is None else limit + 1)
        if limit is not None and len(body) > limit:
            detail = f"The request body is larger than {limit} bytes."
            return _refuse(start_response, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, detail)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _read(stream: Any, most: int | None) -> bytes:
    """Read ``stream`` to its end, or until ``most`` bytes (a read may return fewer)."""
    buffer = bytearray()
    while most is None or len(buffer) < most:
        piece = stream.read(65536 if most is None else min(65536, most - len(buffer)))
        if not piece:
            break
        buffer += piece
    return bytes(buffer)


def _refuse(start_response: StartResponse, status: HTTPStatus, detail: str) -> list[bytes]:
    """Answer in the API's error shape (jobs/api/errors.py), before Django sees the request."""
    code = "too_large" if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE else "length_required"
    body = json.dumps({"detail": detail, "code": code}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(f"{status.value} {status.phrase}", headers)
    return [body]


application = ChunkedBodies(get_wsgi_application())
