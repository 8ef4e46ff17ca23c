"""The app's start-up: where registration flows upward into the task registry.

The top of the layers: it may import anything, and nothing in ``jobs`` imports it.
"""

from importlib import import_module

from django.apps import AppConfig
from django.core import checks
from django.utils.module_loading import autodiscover_modules

from jobs import tasks
from jobs.backends import backend
from jobs.conf import conf
from jobs.routers import check_replica_settings
from jobs.worker.connections import check_sqlite_settings


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Fill the task registry. Registration flows upward from here: the registry
        imports none of the code that registers (see the README's Architecture)."""
        # ``django.tasks`` tasks declared on a JobsBackend run by their module path.
        tasks.add_resolver(backend.resolve)
        # The built-in tasks, then every installed app's ``tasks`` module and any module
        # listed in JOBS_TASK_MODULES. Imported here, not above: they may import models.
        import_module("jobs.tasks.builtin")
        checks.register(check_sqlite_settings)
        checks.register(check_replica_settings)
        autodiscover_modules("tasks")
        for module in conf.TASK_MODULES:
            import_module(module)
        for name, options in conf.EXTERNAL_TASKS.items():
            options = dict(options)
            tasks.register_external(name, schema=options.pop("payload_schema", None), **options)
