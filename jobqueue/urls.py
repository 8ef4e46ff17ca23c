from django.contrib import admin
from django.urls import include, path, re_path, reverse_lazy
from drf_spectacular.views import SpectacularSwaggerView

from jobs.api.docs import docs_view
from jobs.api.schema_view import SchemaView
from jobs.api.views import health, prometheus_metrics

# GET and HEAD only: Swagger UI's HTML renderer cannot answer OPTIONS (a 500 otherwise).
swagger_ui = SpectacularSwaggerView.as_view(url_name="schema", http_method_names=["get", "head"])

# The admin's "View site" link: this project's site is its API, documented at /docs
# (the default, "/", is no page here).
admin.site.site_url = reverse_lazy("docs")

# An unreachable database raised outside a view is a 503 too, not a 500.
handler500 = "jobs.unavailable.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("jobs.api.urls")),
    re_path(r"^api/schema/?$", docs_view(SchemaView.as_view()), name="schema"),
    re_path(r"^docs/?$", docs_view(swagger_ui), name="docs"),
    re_path(r"^health/?$", health, name="health"),
    re_path(r"^metrics/?$", prometheus_metrics, name="metrics"),
    path("api-auth/", include("rest_framework.urls")),
]
