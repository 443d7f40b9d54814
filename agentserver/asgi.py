"""ASGI entry point: ``uvicorn agentserver.asgi:application``."""

from __future__ import annotations

import os

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentserver.settings")
django_asgi_app = get_asgi_application()

from agentserver.startup import prepare_process  # noqa: E402  (needs Django set up)

prepare_process()

application = ProtocolTypeRouter({"http": django_asgi_app})
