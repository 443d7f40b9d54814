from django.apps import AppConfig


class AgentserverConfig(AppConfig):
    name = "agentserver"

    def ready(self) -> None:
        from agentserver import checks  # noqa: F401  (registers the system checks)
