"""System checks: misconfiguration is reported with a stable id and a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from agentserver.conf import DEFAULTS, server_settings
from agentserver.config import ConfigError, get_config

DEVELOPMENT_KEY = "agentserver-insecure-development-key"


@register()
def check_agent_server_settings(app_configs: Any = None, **kwargs: Any) -> list:
    problems = []
    for name in DEFAULTS:
        try:
            getattr(server_settings, name)
        except ImproperlyConfigured as exc:
            problems.append(
                Error(str(exc), hint=f"Fix AGENT_SERVER['{name}'] or AGENTSERVER_{name}.", id="agentserver.E007")
            )
    if problems:
        return problems
    dispatcher = server_settings.DISPATCHER
    if dispatcher not in {"celery", "inprocess"}:
        problems.append(
            Error(
                f"AGENT_SERVER['DISPATCHER'] is {dispatcher!r}.",
                hint='Use "celery" (production) or "inprocess" (python manage.py dev).',
                id="agentserver.E001",
            )
        )
    bus = server_settings.EVENT_BUS
    if bus not in {"redis", "memory"}:
        problems.append(
            Error(
                f"AGENT_SERVER['EVENT_BUS'] is {bus!r}.",
                hint='Use "redis" (needs REDIS_URL) or "memory" (one process only).',
                id="agentserver.E002",
            )
        )
    if bus == "redis" and not settings.REDIS_URL:
        problems.append(
            Error(
                "The Redis event bus is selected but REDIS_URL is not set.",
                hint="Set REDIS_URL, e.g. redis://127.0.0.1:6379/0.",
                id="agentserver.E003",
            )
        )
    if dispatcher == "celery" and settings.CELERY_BROKER_URL.startswith("memory://"):
        problems.append(
            Error(
                "Runs are dispatched through Celery but no broker is configured.",
                hint="Set CELERY_BROKER_URL (redis:// or amqp://) or REDIS_URL.",
                id="agentserver.E004",
            )
        )
    if dispatcher == "celery" and bus == "memory":
        problems.append(
            Error(
                "Celery workers run in other processes, which an in-memory event bus cannot reach.",
                hint="Set REDIS_URL so the event bus uses Redis Streams.",
                id="agentserver.E005",
            )
        )
    try:
        get_config()
    except ConfigError as exc:
        problems.append(
            Error(
                str(exc),
                hint="Pass --config to `manage.py dev` or set AGENTSERVER_CONFIG to a langgraph.json.",
                id="agentserver.E006",
            )
        )
    if settings.SECRET_KEY == DEVELOPMENT_KEY and connections["default"].vendor != "sqlite" and not settings.DEBUG:
        problems.append(
            Warning(
                "The development SECRET_KEY is in use with a production database.",
                hint="Set SECRET_KEY in the environment.",
                id="agentserver.W001",
            )
        )
    return problems
