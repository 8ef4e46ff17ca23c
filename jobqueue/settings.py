"""Settings for jobqueue, read from the environment with safe defaults.

``DATABASE_URL`` picks the database (SQLite file in the repository by default),
``DJANGO_SECRET_KEY`` the secret key (generated once and kept in ``.secret_key``
when absent), ``DJANGO_DEBUG`` turns debug on, ``DJANGO_ALLOWED_HOSTS`` and
``DJANGO_CSRF_TRUSTED_ORIGINS`` are comma-separated lists. Queue settings
(``JOBS_*``) are read in ``jobs/conf.py``.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY")
    if key:
        return key
    # No key given: generate one for this checkout and keep it, so sessions and
    # tokens survive restarts. Never a fixed key shared between installations.
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# HTTPS, all opt-in, for a site served over TLS (directly or by a TLS-terminating
# proxy); see "Deploying" in the README. Plain HTTP on a laptop keeps working.
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER"):
    # Only behind a proxy that sets X-Forwarded-Proto itself, overwriting the client's.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT")
SECURE_REDIRECT_EXEMPT = [r"^health/?$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS") or 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_HTTPS")

# Request bodies: Django's cap for forms, and ours for every /api/ request (413).
DATA_UPLOAD_MAX_MEMORY_SIZE = int(
    os.environ.get("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE") or 1024 * 1024
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "jobs",
    "jobqueue",  # this service's own commands (serve)
]

MIDDLEWARE = [
    # First, so it sees every answer Django builds for /api/ paths (see jobs/api/errors.py).
    "jobs.api.errors.ApiErrorMiddleware",
    # A database that cannot be reached: 503 with Retry-After, not 500 (jobs/unavailable.py).
    "jobs.unavailable.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "jobqueue.urls"
WSGI_APPLICATION = "jobqueue.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "600")),
        # Each request's first query is preceded by a check of a reused connection
        # (one round trip, "SELECT 1"): a connection the database dropped is replaced
        # instead of failing that request. An API token request needs none: its token
        # query checks the connection itself (jobs/api/tokens.py).
        conn_health_checks=env_bool("DJANGO_CONN_HEALTH_CHECKS", default=True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock
    # at BEGIN, so a claim's select and update cannot interleave with another's.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file, never :memory:, so worker subprocesses share it.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("JOBS_TEST_SQLITE", str(BASE_DIR / "test_db.sqlite3"))
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # MariaDB 10.11+ / MySQL 8.0+. READ COMMITTED (Django's default for MySQL, kept
    # explicitly): under REPEATABLE READ a claim's locking read takes gap and next-key
    # locks, so concurrent claims and enqueues wait on (or deadlock with) each other
    # instead of SKIP LOCKED passing by. utf8mb4 holds any payload; the session time
    # zone is UTC so CURRENT_TIMESTAMP (Now()) compares with Django's UTC datetimes
    # whatever the server's zone, and no time zone tables are needed.
    DATABASES["default"]["OPTIONS"] = {
        "charset": "utf8mb4",
        "isolation_level": "read committed",
        "init_command": "SET time_zone = '+00:00'",
    }
    # Case-sensitive comparisons, as on PostgreSQL and SQLite: idempotency keys, queue
    # names and concurrency keys are identifiers. See "Databases" in the README.
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_bin"}
    # Django leaves out partial indexes' conditions, expression indexes (MariaDB) and the
    # conditional unique constraint there, and warns; migration 0011 builds their MySQL
    # counterparts (status-led claim indexes, a unique index over a generated column).
    SILENCED_SYSTEM_CHECKS = ["models.W036", "models.W037", "models.W043"]
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    # Nothing here reads through a server-side cursor; without them every connection
    # works through a transaction pooler (PgBouncer) too. See "Scale path" in the README.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

# A read replica for the admin's job list and dashboard, /api/stats and /metrics (GET only);
# every write and every other read stays on the primary. See "Scale path" in the README.
if os.environ.get("DATABASE_REPLICA_URL"):
    DATABASES["replica"] = {
        **DATABASES["default"],
        **dj_database_url.parse(
            os.environ["DATABASE_REPLICA_URL"],
            conn_max_age=int(os.environ.get("DJANGO_CONN_MAX_AGE", "600")),
            conn_health_checks=env_bool("DJANGO_CONN_HEALTH_CHECKS", default=True),
        ),
        "TEST": {"MIRROR": "default"},
    }
    DATABASES["replica"]["DISABLE_SERVER_SIDE_CURSORS"] = True  # through a pooler too
    DATABASE_ROUTERS = ["jobs.routers.ReadReplicaRouter"]
    JOBS_READ_REPLICA = "replica"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's Tasks framework: @task functions become jobs, run by `manage.py runworker`.
# QUEUES=[] accepts any queue name (workers choose theirs with --queue).
TASKS = {"default": {"BACKEND": "jobs.backends.JobsBackend", "QUEUES": []}}

# Email for the send_email task: SMTP when DJANGO_EMAIL_HOST is set, else the console.
_email_host = os.environ.get("DJANGO_EMAIL_HOST", "")
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend"
        if _email_host
        else "django.core.mail.backends.console.EmailBackend",
        "OPTIONS": {
            "host": _email_host,
            "port": int(os.environ.get("DJANGO_EMAIL_PORT", "25")),
            "username": os.environ.get("DJANGO_EMAIL_HOST_USER", ""),
            "password": os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("DJANGO_EMAIL_USE_TLS"),
            "use_ssl": env_bool("DJANGO_EMAIL_USE_SSL"),
            "timeout": 30,
        }
        if _email_host
        else {},
    }
}
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "jobqueue@localhost")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# The jobs API configures itself from JOBS_API_* (jobs/api/defaults.py), as it does in any
# project: nothing here changes it. This is for the project's other DRF views, the schema and
# Swagger UI: drf-spectacular's own schema class (which its views need), errors in the API's
# shape, and the API's credentials (SERVE_AUTHENTICATION below).
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "jobs.api.errors.exception_handler",
}

_API_AUTHENTICATION = [
    "jobs.api.authentication.TokenAuthentication",
    "rest_framework.authentication.SessionAuthentication",
]
if env_bool("JOBS_API_BASIC_AUTH"):
    _API_AUTHENTICATION.append("jobs.api.authentication.TLSBasicAuthentication")

SPECTACULAR_SETTINGS = {
    # The statuses a bulk retry selects from: a subset of the job statuses, named apart.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.Status",
        "RetryableStatusEnum": "jobs.api.serializers.RETRYABLE_STATUSES",
    },
    "TITLE": "jobqueue API",
    "DESCRIPTION": "Submit, inspect and manage background jobs.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_AUTHENTICATION": _API_AUTHENTICATION,
    # Swagger UI served from our own static files: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "OAS_VERSION": "3.1.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "jobs.api.schema.document_requests",
    ],
    # The schema and Swagger UI describe the API but hold no data: open unless
    # JOBS_DOCS_LOGIN_REQUIRED (see jobs/api/docs.py).
    "SERVE_PERMISSIONS": ["jobs.api.docs.DocsPermission"],
}
# Where a browser signs in when the docs need a login: the session login any active
# user may use (the admin's own login admits staff only).
LOGIN_URL = "rest_framework:login"

# JOBS_LOG_FORMAT: "plain" (readable key=value lines) or "json" (one JSON object a line).
LOG_FORMAT = os.environ.get("JOBS_LOG_FORMAT", "").strip().lower() or "plain"
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"JOBS_LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "jobs.observability.log.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "jobs": {"level": os.environ.get("JOBS_LOG_LEVEL", "INFO"), "propagate": True},
    },
}
