"""The operator's console: jobs, workers and schedules in the Django admin, and the dashboard.

Owns the ``ModelAdmin`` classes (``jobs``, ``schedules``, ``workers``), the job
form (``forms``), the changelist helpers that keep it fast at millions of rows
(``changelist``), the dashboard (``dashboard``, its ``chart``), the failures view
(``failures``) and the queue overview (``queue_page``). Django's admin autodiscovery
imports this package, which registers all three.

An adapter like ``jobs.api`` and ``jobs.worker``: every change goes through
``jobs.lifecycle`` or ``jobs.schedules``. It must not import ``jobs.api``,
``jobs.worker`` or ``jobs.backends`` (the import contracts in ``pyproject.toml``
enforce it).
"""

from jobs.admin import jobs, queues, schedules, workers, workflows  # noqa: F401  (register)
