"""Who may read the API's description (``/docs``, ``/api/schema``), and where a browser signs in.

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

from jobs.conf import conf

if TYPE_CHECKING:
    from rest_framework.views import APIView


class DocsPermission(BasePermission):
    """Allow anyone, or only signed-in users when ``JOBS_DOCS_LOGIN_REQUIRED`` is on."""

    def has_permission(self, request: Request, view: "APIView") -> bool:
        return not conf.DOCS_LOGIN_REQUIRED or bool(request.user and request.user.is_authenticated)


def sign_in_first(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Send a browser refused for want of credentials to ``LOGIN_URL``, with ``?next=`` back.

    Only a client that prefers HTML over JSON (a browser) is redirected; ``curl`` and
    API clients (``*/*``, ``application/json``) get the 401 in the JSON error shape,
    whatever the view renders otherwise (HTML for Swagger UI, YAML for the schema).
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code != 401:
            return response
        if request.get_preferred_type(["application/json", "text/html"]) == "text/html":
            return redirect_to_login(request.get_full_path())
        refused = JsonResponse(getattr(response, "data", {}), status=401)
        if "WWW-Authenticate" in response:
            refused["WWW-Authenticate"] = response["WWW-Authenticate"]
        return refused

    return wrapped
