"""The built-in tasks, one module each, named after the task: ``simulate``, ``noop`` and
``echo`` (``basic``), ``send_email``, ``http_request`` and ``jobs.purge`` (``purge``).

Importing this package registers them; the app does so at start-up
(``jobs.apps.JobsConfig.ready``), so every process that runs jobs knows them.
A task is a plain function of its payload: it must not import ``jobs.lifecycle``
(a task never moves a job through the state machine) or anything above it.
"""

from jobs.tasks.builtin import basic, http_request, purge, send_email  # noqa: F401  (register)
