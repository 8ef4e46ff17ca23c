"""The token lookup of ``TokenAuthentication``: a DRF token, its user and what the user
may do, in one query whose SQL is built once.

Per request, DRF's token query, then Django's ``ModelBackend`` loading the user's own
and group permissions, made three ORM queries, each built anew (building costs more
CPU than running it) and each planned anew by PostgreSQL. Here the token, its user and
the ids of the permissions the user holds (own, and through groups) come in one query,
built by the ORM once per process and database, with subqueries simple enough to plan
in a fraction of a millisecond. Grants are read on every request: a permission taken
away, a user deactivated or a token deleted counts from the next request on.

What each permission id is called (``app_label.codename``) is kept per process: it is
read again when an unknown id appears, and forgotten when a ``Permission`` or
``ContentType`` is saved or deleted in this process. Renaming a permission elsewhere
(a migration, raw SQL) takes a restart of the web processes, as a deploy does.
"""

import threading
from collections.abc import Iterable
from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import InterfaceError, OperationalError
from django.db.models import OuterRef, Subquery, TextField, Value
from django.db.models.aggregates import StringAgg
from django.db.models.functions import Cast
from django.db.models.signals import post_delete, post_save
from rest_framework.authtoken.models import Token


class TokenQuery:
    """The SQL of "this key's token, its user, and the ids of the user's own and group
    permissions", columns in a known order; built once per connection alias and vendor."""

    _built: ClassVar[dict[tuple[str, str], "TokenQuery"]] = {}
    _SENTINEL = "key-placeholder-of-the-built-query"

    def __init__(self, alias: str) -> None:
        user_model = get_user_model()
        self.alias = alias
        self.token_fields = [f.attname for f in Token._meta.concrete_fields]
        self.user_fields = [f.attname for f in user_model._meta.concrete_fields]
        own = user_model.user_permissions.through.objects.filter(user_id=OuterRef("user_id"))
        groups = user_model.groups.through.objects.filter(user_id=OuterRef(OuterRef("user_id")))
        via_groups = Group.permissions.through.objects.filter(
            group_id__in=groups.values("group_id")
        )
        tokens = Token.objects.using(alias).filter(key=self._SENTINEL)
        tokens = tokens.annotate(own_ids=_joined_ids(own), group_ids=_joined_ids(via_groups))
        columns = [*self.token_fields, *(f"user__{name}" for name in self.user_fields)]
        query = tokens.values_list(*columns, "own_ids", "group_ids").query
        self.sql, params = query.sql_with_params()
        self._params = list(params)
        self._key_at = self._params.index(self._SENTINEL)

    @classmethod
    def get(cls, conn: Any) -> "TokenQuery":
        slot = (conn.alias, conn.vendor)
        if slot not in cls._built:
            cls._built[slot] = cls(conn.alias)
        return cls._built[slot]

    def fetch(self, conn: Any, key: str) -> tuple[Any, Any, set[str], set[str]] | None:
        """Return the token, its user and the user's own and group permission names;
        ``None`` for an unknown key."""
        params = list(self._params)
        params[self._key_at] = key
        row = fetch_checked(conn, self.sql, params)
        if row is None:
            return None
        n, m = len(self.token_fields), len(self.token_fields) + len(self.user_fields)
        user = get_user_model().from_db(self.alias, self.user_fields, row[n:m])
        token = Token.from_db(self.alias, self.token_fields, row[:n])
        token.user = user
        own, via_groups = _ids(row[m]), _ids(row[m + 1])
        names = permission_names(self.alias, own | via_groups)
        return (
            token,
            user,
            {names[i] for i in own if i in names},
            {names[i] for i in via_groups if i in names},
        )


def _joined_ids(through: Any) -> Subquery:
    """The ``permission_id`` of the rows of ``through``, joined by commas; NULL for none."""
    ids = StringAgg(Cast("permission_id", TextField()), Value(","))
    return Subquery(through.order_by().values(x=Value(1)).annotate(ids=ids).values("ids"))


def _ids(joined: str | None) -> set[int]:
    return {int(i) for i in joined.split(",")} if joined else set()


def fetch_checked(conn: Any, sql: str, params: list[Any]) -> Any:
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


_names: dict[str, dict[int, str]] = {}  # alias -> permission id -> "app_label.codename"
_names_lock = threading.Lock()


def permission_names(alias: str, ids: Iterable[int]) -> dict[int, str]:
    """Map permission ids to names, reading the permissions again if one is unknown.

    An id still unknown after that belongs to a permission deleted meanwhile: it is
    left out, as the grant went with it.
    """
    names = _names.get(alias, {})
    if all(i in names for i in ids):
        return names
    with _names_lock:
        rows = Permission.objects.using(alias).values_list(
            "id", "content_type__app_label", "codename"
        )
        names = {pk: f"{app_label}.{codename}" for pk, app_label, codename in rows}
        _names[alias] = names
    return names


def forget_permission_names(**kwargs: Any) -> None:
    _names.clear()


for _model in (Permission, ContentType):
    post_save.connect(forget_permission_names, sender=_model, dispatch_uid="jobs.api.tokens")
    post_delete.connect(forget_permission_names, sender=_model, dispatch_uid="jobs.api.tokens")
