"""The REST API: ``/api/jobs``, ``/api/schedules``, ``/api/tasks``, ``/api/stats``, health, metrics.

One concept per module: serializers (built on fields), views, filters, pagination, permissions,
authentication, throttling, parsers, errors, the OpenAPI schema and the URLs.
An adapter like ``jobs.admin`` and ``jobs.worker``: views are thin callers of
``jobs.lifecycle``, ``jobs.runner`` and ``jobs.schedules``. It must not import
``jobs.admin``, ``jobs.worker`` or ``jobs.backends`` (see ``pyproject.toml``).
"""
