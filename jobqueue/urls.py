from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularSwaggerView

from jobs.api.schema_view import SchemaView
from jobs.api.views import health, prometheus_metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("jobs.api.urls")),
    re_path(r"^api/schema/?$", SchemaView.as_view(), name="schema"),
    re_path(r"^docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    re_path(r"^health/?$", health, name="health"),
    re_path(r"^metrics/?$", prometheus_metrics, name="metrics"),
    path("api-auth/", include("rest_framework.urls")),
]
