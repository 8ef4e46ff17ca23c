"""Cursor pages returned as a plain JSON array, with links in the ``Link`` header.

The prototype's clients expect ``GET /api/jobs`` to answer with an array, so the
page links travel in the header (RFC 8288), as GitHub's API does. A page size
outside 1..``JOBS_MAX_PAGE_SIZE`` or a cursor this server did not issue is a 400,
never a silent default.
"""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from jobs.conf import conf


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

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        try:
            return super().paginate_queryset(queryset, request, view)
        except (NotFound, DjangoValidationError, DataError, ValueError, TypeError):
            if self.cursor_query_param not in request.query_params:
                raise
            # A cursor that does not decode, or whose position does not fit the ordering.
            raise ValidationError({"cursor": ["Invalid cursor."]}) from None

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
