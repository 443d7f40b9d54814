"""Django settings, read from the environment (twelve-factor).

Everything works with no services: SQLite file, in-process dispatcher and event bus.
Set ``DATABASE_URL``, ``REDIS_URL`` and ``CELERY_BROKER_URL`` for production.
Our own knobs live in the ``AGENT_SERVER`` dict, read lazily through ``agentserver.conf``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if not raw:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# A development key is fine for the embedded default; the system check
# agentserver.W001 warns when it is used with a production database.
SECRET_KEY = os.environ.get("SECRET_KEY", "agentserver-insecure-development-key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "channels",
    "agentserver",
    "threads",
    "runs",
    "crons",
]

MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Sessions, users, messages, CSRF and static files, for the admin's paths only.
    "agentserver.middleware.AdminOnlyMiddleware",
]
# The admin's checks look for its middleware in MIDDLEWARE; AdminOnlyMiddleware runs them.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]

ROOT_URLCONF = "agentserver.urls"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

ASGI_APPLICATION = "agentserver.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'agentserver.sqlite3'}",
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A connection pool per process: runs, checkpoint writes and stream readers borrow a
    # connection per unit of work instead of pinning one per thread (which exhausts
    # max_connections with many worker threads) or reconnecting each time.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": int(os.environ.get("DATABASE_POOL_MIN", 2)),
        "max_size": int(os.environ.get("DATABASE_POOL_MAX", 20)),
        "timeout": 30,
    }
    # Parameters travel apart from the SQL, and psycopg prepares a statement once a
    # connection has run it a few times: no quoting of every value into the SQL text on
    # our side, no parse and plan of the same statements on Postgres's (Postgres CPU per
    # run about halved). Off for a pooler that cannot keep prepared statements (PgBouncer
    # in transaction mode before 1.21).
    if env_bool("DATABASE_PREPARED_STATEMENTS", True):
        DATABASES["default"]["OPTIONS"].update(server_side_binding=True, prepare_threshold=5)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer; IMMEDIATE transactions take the write
    # lock up front so concurrent writers queue on busy_timeout instead of failing.
    # Each thread keeps its connection (request threads are reused, see agentserver.asgi):
    # opening one costs a file open, the PRAGMAs and Django's SQL functions every time.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    # Django's backend whose writers of one process queue on a lock instead of SQLite's
    # sleeping busy handler (see agentserver.sqlite.base).
    DATABASES["default"]["ENGINE"] = "agentserver.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The admin's assets straight from the installed apps: no collectstatic step to forget.
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("HTTP_MAX_REQUEST_BODY_BYTES", 64 * 1024 * 1024))

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["agentserver.renderers.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["agentserver.parsers.ORJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "agentserver.renderers.JSONOnlyNegotiation",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "agentserver.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "agentserver.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "agentserver",
    "DESCRIPTION": "A self-hostable LangGraph Agent Server.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Several bodies have a "status" choice; name each set rather than numbering them.
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "runs.models.RunStatus.values",
        "ThreadStatusEnum": "threads.models.ThreadStatus.values",
        "CancelStatusEnum": ["pending", "running", "all"],
    },
}

# CORS as the official server: Studio is a browser app on another origin.
CORS_ALLOW_ALL_ORIGINS = True
CORS_EXPOSE_HEADERS = ["x-pagination-total", "x-pagination-next", "content-location", "location"]
CORS_ALLOW_HEADERS = ["*"]
CORS_ALLOW_PRIVATE_NETWORK = env_bool("ALLOW_PRIVATE_NETWORK", False)

REDIS_URL = os.environ.get("REDIS_URL", "")

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or "memory://"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# No ack emulation on Redis: kombu would write every delivered message to an "unacked" hash
# and delete it on ack (two round trips, ~11 % of a worker's CPU per trivial run) for a
# redelivery we never rely on: the database is the truth, and the sweep re-sends a run whose
# worker died once its lease expires, and one whose message was lost (a delayed run held by
# a worker that stopped, a flushed Redis) once it is PENDING_REDISPATCH_SECONDS overdue.
CELERY_BROKER_TRANSPORT_OPTIONS = {"ack_emulation": False}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

CHANNEL_LAYERS = {
    "default": (
        {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
        if REDIS_URL
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}

# Our knobs; see agentserver/conf.py for the defaults and their meaning.
AGENT_SERVER: dict = {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "httpx": {"level": "WARNING"},
    },
}
