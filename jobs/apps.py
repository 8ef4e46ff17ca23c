from importlib import import_module

from django.apps import AppConfig
from django.core import checks
from django.utils.module_loading import autodiscover_modules


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from jobs.conf import conf
        from jobs.connections import check_sqlite_settings

        checks.register(check_sqlite_settings)

        # Register the built-in tasks, every installed app's ``tasks`` module, and any
        # module listed in JOBS_TASK_MODULES.
        import_module("jobs.tasks")
        autodiscover_modules("tasks")
        for module in conf.TASK_MODULES:
            import_module(module)
