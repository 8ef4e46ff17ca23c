"""The view serving the OpenAPI document (kept apart: drf-spectacular's views import the
schema class of ``jobs.api.schema``)."""

from typing import Any

from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response


class SchemaView(SpectacularAPIView):
    """The OpenAPI document (YAML; JSON with ``?format=json``)."""

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code >= 400:
            # An error in the API's JSON shape, not as an OpenAPI renderer's YAML.
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = "application/json"
        return response
