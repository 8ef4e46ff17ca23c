"""How the API knows the caller: DRF tokens (with the caller's permissions in the same
query), and HTTP Basic that refuses to work over plain HTTP."""

from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, PermissionsMixin
from django.db import InterfaceError, OperationalError, connections, router
from django.db.models import OuterRef, Subquery, Value
from django.db.models.aggregates import StringAgg
from django.db.models.functions import Concat
from rest_framework import authentication
from rest_framework.authentication import BasicAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
# Between permission names in the query's answer: no app label or codename holds one.
SEPARATOR = "\n"


def _permission_names(via: str) -> Subquery:
    """The token's user's permission names (``app_label.codename``) held ``via`` ("user"
    or "group__user"), joined by ``SEPARATOR``; NULL when there are none."""
    name = Concat("content_type__app_label", Value("."), "codename")
    return Subquery(
        Permission.objects.filter(**{via: OuterRef("user_id")})
        .order_by()
        .values(via)
        .annotate(names=StringAgg(name, Value(SEPARATOR)))
        .values("names")
    )


def _names(joined: str | None) -> set[str]:
    return set(joined.split(SEPARATOR)) if joined else set()


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, reading the user's permissions in the same query.

    The token, its user and the names of the user's own and group permissions come
    in one query and are kept on the user object for this request only, where
    Django's ``ModelBackend`` keeps what it loads (``_user_perm_cache``,
    ``_group_perm_cache``, ``_perm_cache``): the permission check that follows costs
    no query. Nothing is kept between requests, so a permission taken away, a user
    deactivated or a token deleted counts from the next request on. The query's SQL
    is built by the ORM once per process and database (building it is most of its
    cost), then run with each request's key.

    Only with ``ModelBackend`` itself among ``AUTHENTICATION_BACKENDS``, DRF's own
    ``Token`` model and a user model with Django's permissions; otherwise it is DRF's
    ``TokenAuthentication`` as it is. Superusers hold every permission: theirs are
    left for ``ModelBackend`` to load if it is ever asked.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if self.get_model() is not Token or not _primable():
            return super().authenticate_credentials(key)
        conn = connections[router.db_for_read(Token)]
        query = _TokenQuery.get(conn)
        row = _fetch_checked(conn, query.sql, query.params(key))
        if row is None:
            raise AuthenticationFailed("Invalid token.")
        token, user, user_perms, group_perms = query.load(row)
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        if not user.is_superuser:
            user._user_perm_cache = _names(user_perms)
            user._group_perm_cache = _names(group_perms)
            user._perm_cache = user._user_perm_cache | user._group_perm_cache
        return user, token


def _fetch_checked(conn: Any, sql: str, params: list[Any]) -> Any:
    """Run a read and return its first row, on a connection this very query checks.

    With ``CONN_HEALTH_CHECKS``, Django checks a reused connection before a request's
    first query: one more round trip on every request. The token query is that first
    query, and a read, so it checks the connection itself: if the database dropped
    the connection, it is replaced and the query asked again, as the health check
    would have done. Inside a transaction nothing can be asked again: Django's own
    rules apply.
    """

    def fetch() -> Any:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    if conn.connection is None or conn.in_atomic_block or not conn.health_check_enabled:
        return fetch()
    conn.health_check_done = True
    try:
        return fetch()
    except (OperationalError, InterfaceError):
        conn.close()
        return fetch()


def _primable() -> bool:
    return MODEL_BACKEND in settings.AUTHENTICATION_BACKENDS and issubclass(
        get_user_model(), PermissionsMixin
    )


class _TokenQuery:
    """The SQL of "this key's token, its user and the user's permission names", with
    the columns in a known order, compiled once per database connection alias."""

    _compiled: ClassVar[dict[tuple[str, str], "_TokenQuery"]] = {}
    _SENTINEL = "key-placeholder-of-the-compiled-query"

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.token_fields = [f.attname for f in Token._meta.concrete_fields]
        self.user_fields = [f.attname for f in get_user_model()._meta.concrete_fields]
        columns = [*self.token_fields, *(f"user__{name}" for name in self.user_fields)]
        tokens = (
            Token.objects.using(alias)
            .filter(key=self._SENTINEL)
            .annotate(
                user_perm_names=_permission_names("user"),
                group_perm_names=_permission_names("group__user"),
            )
        )
        query = tokens.values_list(*columns, "user_perm_names", "group_perm_names").query
        self.sql, params = query.sql_with_params()
        self._params = list(params)
        self._key_at = self._params.index(self._SENTINEL)

    @classmethod
    def get(cls, conn: Any) -> "_TokenQuery":
        slot = (conn.alias, conn.vendor)
        if slot not in cls._compiled:
            cls._compiled[slot] = cls(conn.alias)
        return cls._compiled[slot]

    def params(self, key: str) -> list[Any]:
        params = list(self._params)
        params[self._key_at] = key
        return params

    def load(self, row: tuple[Any, ...]) -> tuple[Any, Any, str | None, str | None]:
        """Build the token and its user from a row, as the ORM would; and the names."""
        n, m = len(self.token_fields), len(self.token_fields) + len(self.user_fields)
        user = get_user_model().from_db(self.alias, self.user_fields, row[n:m])
        token = Token.from_db(self.alias, self.token_fields, row[:n])
        token.user = user
        return token, user, row[m], row[m + 1]


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
