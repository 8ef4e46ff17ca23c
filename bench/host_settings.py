"""A host project's settings for ``bench.host``: Django's defaults, jobqueue installed.

What ``django-admin startproject`` writes (no LOGGING, no REST_FRAMEWORK,
``CONN_MAX_AGE = 0``, SQLite without OPTIONS), with ``DATABASE_URL`` picking the
database and the ``jobs`` logger turned down to WARNING, as every benchmark runs
this repository's settings (``JOBS_LOG_LEVEL=WARNING``): only the settings a host
owns differ between the two.
"""

import os

import dj_database_url

SECRET_KEY = "bench-host-project-not-secret"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "jobs",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0)}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TASKS = {"default": {"BACKEND": "jobs.backends.JobsBackend"}}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"jobs": {"level": "WARNING"}},
}
