"""How the API knows the caller: DRF tokens (with the caller's permissions in the same
query), and HTTP Basic that refuses to work over plain HTTP."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import PermissionsMixin
from django.db import connections, router
from rest_framework import authentication
from rest_framework.authentication import BasicAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from jobs.api.tokens import TokenQuery

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, reading the user's permissions in the same query.

    The token, its user and the user's own and group permissions come in one query
    (``jobs.api.tokens``) and are kept on the user object for this request only,
    where Django's ``ModelBackend`` keeps what it loads (``_user_perm_cache``,
    ``_group_perm_cache``, ``_perm_cache``): the permission check that follows costs
    no query. Grants are read on every request, so a permission taken away, a user
    deactivated or a token deleted counts from the next request on.

    Only with ``ModelBackend`` itself among ``AUTHENTICATION_BACKENDS``, DRF's own
    ``Token`` model and a user model with Django's permissions; otherwise it is DRF's
    ``TokenAuthentication`` as it is. Superusers hold every permission: theirs are
    left for ``ModelBackend`` to load if it is ever asked.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if self.get_model() is not Token or not _primable():
            return super().authenticate_credentials(key)
        conn = connections[router.db_for_read(Token)]
        found = TokenQuery.get(conn).fetch(conn, key)
        if found is None:
            raise AuthenticationFailed("Invalid token.")
        token, user, own, via_groups = found
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        if not user.is_superuser:
            user._user_perm_cache, user._group_perm_cache = own, via_groups
            user._perm_cache = own | via_groups
        return user, token


def _primable() -> bool:
    return MODEL_BACKEND in settings.AUTHENTICATION_BACKENDS and issubclass(
        get_user_model(), PermissionsMixin
    )


class TLSBasicAuthentication(BasicAuthentication):
    """Accept ``Authorization: Basic`` only on HTTPS requests (``request.is_secure()``).

    Behind a TLS-terminating proxy, set ``DJANGO_SECURE_PROXY_SSL_HEADER`` so Django
    can tell. Over plain HTTP the password has already crossed the network in
    clear text: the request is refused, so the client learns to stop.
    """

    def authenticate(self, request: Request) -> Any:
        header = get_authorization_header(request).split()
        if header and header[0].lower() == b"basic" and not request.is_secure():
            raise AuthenticationFailed("HTTP Basic authentication is only accepted over HTTPS.")
        return super().authenticate(request)
