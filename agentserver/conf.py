"""Lazily read ``settings.AGENT_SERVER`` with defaults, reloaded when tests override it.

Usage: ``from agentserver.conf import server_settings`` then ``server_settings.RUN_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver


def _default_config_path() -> str:
    return os.environ.get("AGENTSERVER_CONFIG") or str(settings.BASE_DIR / "examples" / "langgraph.json")


def _default_dispatcher() -> str:
    explicit = os.environ.get("AGENTSERVER_DISPATCHER")
    if explicit:
        return explicit
    return "celery" if os.environ.get("CELERY_BROKER_URL") or settings.REDIS_URL else "inprocess"


def _default_event_bus() -> str:
    return os.environ.get("AGENTSERVER_EVENT_BUS") or ("redis" if settings.REDIS_URL else "memory")


DEFAULTS: dict[str, Any] = {
    # Path of the langgraph.json-compatible config file.
    "CONFIG": _default_config_path,
    # "celery": Celery workers run them (taking ready runs off a Redis list); "inprocess": a
    # thread pool of the web process (dev).
    "DISPATCHER": _default_dispatcher,
    # "redis" (Redis Streams) or "memory" (one process only).
    "EVENT_BUS": _default_event_bus,
    # Threads of the in-process dispatcher.
    "INPROCESS_WORKERS": 10,
    # Threads per worker process for sync graph nodes and ORM calls of running attempts.
    "SYNC_POOL_SIZE": 32,
    # A run that runs longer ends as `timeout` (BG_JOB_TIMEOUT_SECS of the reference).
    "RUN_TIMEOUT_SECONDS": 86400.0,
    # Attempts of one run before it ends as `error` (worker lost, transient failures).
    "RUN_MAX_ATTEMPTS": 3,
    # A claimed run whose lease is not renewed for this long is presumed dead.
    "LEASE_SECONDS": 30.0,
    # How often a running run renews its lease.
    "HEARTBEAT_SECONDS": 5.0,
    # A pending run whose message went missing is re-sent after this long.
    "PENDING_REDISPATCH_SECONDS": 30.0,
    # Events of a run are kept this long after it ends (the reference keeps 120 s).
    "STREAM_TTL_SECONDS": 3600,
    # Upper bound on events kept per run.
    "STREAM_MAXLEN": 100_000,
    # A cancel is answered once the run has stopped, or after this long.
    "CANCEL_WAIT_SECONDS": 10.0,
    # Interval of SSE heartbeats and /wait keep-alive newlines.
    "KEEPALIVE_SECONDS": 5.0,
    # How often `manage.py dev` runs the recovery sweep (beat's interval is in its tables).
    "SWEEP_INTERVAL_SECONDS": 5.0,
    # Webhooks to private, loopback or link-local addresses are refused unless this is true.
    "WEBHOOK_ALLOW_PRIVATE": False,
    # HMAC-SHA256 key for the X-Agentserver-Signature header on webhooks ("" = unsigned).
    "WEBHOOK_SECRET": "",
    "WEBHOOK_MAX_ATTEMPTS": 5,
}


def _from_environment(name: str, default: Any) -> Any:
    """``AGENTSERVER_<NAME>`` overrides a default (twelve-factor), parsed as its type."""
    raw = os.environ.get(f"AGENTSERVER_{name}")
    if raw is None or callable(default):
        return default
    if isinstance(default, str):
        return raw
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        return type(default)(raw)
    except ValueError:
        raise ImproperlyConfigured(f"AGENTSERVER_{name} must be a {type(default).__name__}, got {raw!r}") from None


class ServerSettings:
    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid AGENT_SERVER setting: {name!r}")
        if name not in self._cache:
            user = getattr(settings, "AGENT_SERVER", {}) or {}
            value = user[name] if name in user else _from_environment(name, DEFAULTS[name])
            self._cache[name] = value() if callable(value) else value
        return self._cache[name]

    def reload(self) -> None:
        self._cache.clear()


server_settings = ServerSettings()


@receiver(setting_changed)
def _reload_server_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in {"AGENT_SERVER", "REDIS_URL"}:
        server_settings.reload()
