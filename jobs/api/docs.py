"""Who may read the API's description (``/docs``, ``/api/schema``), and how they answer errors.

Both describe the API, not its data, so anyone may read them by default; every call
made from Swagger UI still needs a token or a session. ``JOBS_DOCS_LOGIN_REQUIRED``
closes them to anonymous callers: a browser is then sent to the login page and
back, an API client gets the usual 401.
"""

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from jobs.api.errors import json_error
from jobs.conf import conf

if TYPE_CHECKING:
    from rest_framework.views import APIView

# Headers an error answer needs to stay meaningful once rewritten.
KEPT_HEADERS = ("WWW-Authenticate", "Allow", "Retry-After")


class DocsPermission(BasePermission):
    """Allow anyone, or only signed-in users when ``JOBS_DOCS_LOGIN_REQUIRED`` is on."""

    def has_permission(self, request: Request, view: "APIView") -> bool:
        return not conf.DOCS_LOGIN_REQUIRED or bool(request.user and request.user.is_authenticated)


def docs_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a docs view: a browser refused for want of credentials goes to ``LOGIN_URL``
    (with ``?next=`` back); every other error is answered in the JSON error shape.

    Only a client that prefers HTML over JSON (a browser) is redirected; ``curl`` and
    API clients (``*/*``, ``application/json``) get the 401. Without this, Swagger UI's
    errors are bare text pages and the schema's are YAML.
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code < 400:
            return response
        if response.status_code == 406 and _anonymous(request) and conf.DOCS_LOGIN_REQUIRED:
            # Content negotiation runs before the permission check: who may not read the
            # page at all hears that first, whatever format it asked for.
            refused = json_error(401, "Authentication credentials were not provided.")
            refused["WWW-Authenticate"] = "Token"
            return refused
        browser = request.get_preferred_type(["application/json", "text/html"]) == "text/html"
        if response.status_code == 401 and browser:
            return redirect_to_login(request.get_full_path())
        data = getattr(response, "data", None)  # a DRF answer: already in the error shape
        if isinstance(data, dict) and "detail" in data:
            answer = JsonResponse(data, status=response.status_code)
        else:
            answer = json_error(response.status_code)
        for header in KEPT_HEADERS:
            if header in response:
                answer[header] = response[header]
        return answer

    return wrapped


def _anonymous(request: HttpRequest) -> bool:
    """No session user and no credentials sent (a token is checked by the view itself)."""
    user = getattr(request, "user", None)
    signed_in = bool(user and user.is_authenticated)
    return not signed_in and "Authorization" not in request.headers
