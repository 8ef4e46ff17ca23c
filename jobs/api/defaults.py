"""The API's own policy, from ``JOBS_API_*`` settings rather than ``REST_FRAMEWORK``.

DRF views take their authentication, permissions, parsers, renderers, throttles,
filters, pagination and exception handler from the project's ``REST_FRAMEWORK``
defaults. The jobs API must behave the same in any project that mounts
``jobs.api.urls``, including one that never configured DRF (whose defaults are
session and Basic authentication and ``AllowAny``), so every view of the API
takes ``ApiDefaults`` first and reads its policy from ``jobs.conf``.

Each attribute is read when DRF asks for it (per request), so settings changed in
tests apply; a view's own class attribute (``permission_classes = [...]``) or an
``@action(permission_classes=...)`` still overrides it, as in DRF.
"""

import functools
from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

from jobs.api.schema import AutoSchema
from jobs.conf import conf


@functools.cache
def _import(path: str) -> Any:
    # Read per request (see above): the dotted path's import is looked up once.
    return import_string(path)


def _load(value: Any) -> Any:
    return _import(value) if isinstance(value, str) else value


class _FromConf:
    """A class attribute whose value is read from ``jobs.conf`` at each access.

    A non-data descriptor: a value set on a subclass or on the view instance wins.
    """

    def __init__(self, read: Callable[[], Any]) -> None:
        self.read = read

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self.read()


def _classes(read: Callable[[], list[Any]]) -> _FromConf:
    return _FromConf(lambda: [_load(item) for item in read()])


def _pagination_class() -> Any:
    return _load(conf.API_PAGINATION_CLASS) if conf.API_PAGINATION_CLASS else None


class ApiDefaults:
    """Mix into every API view, first: the jobs API's policy wherever it is mounted."""

    authentication_classes = _classes(lambda: conf.API_AUTHENTICATION_CLASSES)
    permission_classes = _classes(lambda: conf.API_PERMISSION_CLASSES)
    throttle_classes = _classes(lambda: conf.API_THROTTLE_CLASSES)
    parser_classes = _classes(lambda: conf.API_PARSER_CLASSES)
    renderer_classes = _classes(lambda: conf.API_RENDERER_CLASSES)
    # The error answers in the OpenAPI schema, whatever DEFAULT_SCHEMA_CLASS says.
    schema = AutoSchema()

    def get_exception_handler(self) -> Callable[..., Any]:
        return _load(conf.API_EXCEPTION_HANDLER)


class ListDefaults(ApiDefaults):
    """Mix into every model view (a ``GenericAPIView``), first: also its filters and pages."""

    filter_backends = _classes(lambda: conf.API_FILTER_BACKENDS)
    pagination_class = _FromConf(_pagination_class)
