"""A JSON parser that turns every malformed body into a 400, never a 500."""

import json
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's strict JSON parser, also refusing what JSON decodes but cannot store.

    Refused: nesting deeper than Python's recursion limit, numbers too large for a
    float (``1e400``), and lone UTF-16 surrogates (``"\\ud800"``), which no
    database or JSON encoder downstream accepts.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
            json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
        except (ValueError, UnicodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        return data
