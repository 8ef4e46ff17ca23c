"""Cursor pages returned as a plain JSON array, with links in the ``Link`` header.

The prototype's clients expect ``GET /api/jobs`` to answer with an array, so the
page links travel in the header (RFC 8288), as GitHub's API does. A page size
outside 1..``JOBS_MAX_PAGE_SIZE`` or a cursor this server did not issue (cursors are
signed) is a 400, never a silent default.
"""

from typing import Any

from django.core import signing
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from jobs.conf import conf

CURSOR_SALT = "jobs.api.pagination.cursor"
INVALID_CURSOR = "Invalid cursor: follow the URLs of the Link header."


class LinkHeaderCursorPagination(CursorPagination):
    ordering = "-created_at"
    page_size_query_param = "page_size"

    def __init__(self) -> None:
        # JOBS_API_PAGE_SIZE, not DRF's PAGE_SIZE: a project without REST_FRAMEWORK has none.
        self.page_size = conf.API_PAGE_SIZE

    @property
    def max_page_size(self) -> int:
        return conf.MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return min(self.page_size, self.max_page_size)
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError(
                {"page_size": [f"Use a whole number from 1 to {self.max_page_size}."]}
            )
        return size

    def encode_cursor(self, cursor: Cursor) -> str:
        """Return the URL of the page at ``cursor``, signed together with its ordering.

        DRF's cursors are plain base64 that anyone can forge (a made-up position or
        offset, or a cursor of another ordering, answered 200 with a wrong page); a
        signed one is honoured only as issued.
        """
        fields = [cursor.offset, cursor.reverse, cursor.position, list(self.ordering)]
        token = signing.dumps(fields, salt=CURSOR_SALT, compress=True)
        return replace_query_param(self.base_url, self.cursor_query_param, token)

    def decode_cursor(self, request: Request) -> Cursor | None:
        """Return the cursor of the request, if any. Raises ``ValidationError`` (400) for
        one this server did not issue, or issued for another ordering."""
        token = request.query_params.get(self.cursor_query_param)
        if token is None:
            return None
        try:
            offset, reverse, position, ordering = signing.loads(token, salt=CURSOR_SALT)
        except (signing.BadSignature, ValueError, TypeError):
            ordering = None
        if ordering != list(self.ordering):
            raise ValidationError({"cursor": [INVALID_CURSOR]})
        return Cursor(offset=offset, reverse=reverse, position=position)

    def get_paginated_response(self, data: Any) -> Response:
        links = []
        if (next_url := self.get_next_link()) is not None:
            links.append(f'<{next_url}>; rel="next"')
        if (previous_url := self.get_previous_link()) is not None:
            links.append(f'<{previous_url}>; rel="prev"')
        headers = {"Link": ", ".join(links)} if links else {}
        return Response(data, headers=headers)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return schema

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """Document ``page_size`` with its range; leave out ``cursor``.

        Cursors are opaque: clients only ever follow the ``Link`` header's URLs, and
        one this server did not issue is a 400.
        """
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] |= {"minimum": 1, "maximum": self.max_page_size}
        return [p for p in parameters if p["name"] != self.cursor_query_param]
