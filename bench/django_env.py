"""Point this process's Django at a benchmark database (once per process)."""

import os


def setup(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobqueue.settings")
    os.environ["JOBS_LOG_LEVEL"] = "WARNING"
    import django

    django.setup()
