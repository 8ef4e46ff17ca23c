"""Cursor pages returned as a plain JSON array, with links in the ``Link`` header.

The prototype's clients expect ``GET /api/jobs`` to answer with an array, so the
page links travel in the header (RFC 8288), as GitHub's API does.
"""

from typing import Any

from rest_framework.pagination import CursorPagination
from rest_framework.response import Response


class LinkHeaderCursorPagination(CursorPagination):
    ordering = "-created_at"
    page_size_query_param = "page_size"
    max_page_size = 1000

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
