"""ASGI entry point: ``uvicorn agentserver.asgi:application``.

HTTP goes to Django; websockets to the Channels consumers of ``runs.urls``, behind an
origin check: a browser (which always sends ``Origin``) may connect only from an allowed
origin, so a page elsewhere cannot open a socket with the user's cookies. Clients that
send no ``Origin`` (the SDK, servers) carry no ambient browser credentials and pass.
"""

from __future__ import annotations

import os
from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentserver.settings")
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402  (needs Django set up)

from agentserver.startup import prepare_process  # noqa: E402
from runs.urls import websocket_urlpatterns  # noqa: E402

prepare_process()


class BrowserOriginValidator(OriginValidator):
    """``AllowedHostsOriginValidator`` that lets non-browser clients (no ``Origin``) through.

    Allowed origins: ``ALLOWED_HOSTS`` (``*`` allows all) and any ``CORS_ALLOWED_ORIGINS``.
    """

    def valid_origin(self, parsed_origin: Any) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


def websocket_origins() -> list[str]:
    return [*settings.ALLOWED_HOSTS, *getattr(settings, "CORS_ALLOWED_ORIGINS", [])]


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns), websocket_origins()),
    }
)
