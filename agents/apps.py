from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """bitHuman avatar agents of an organization."""

    name = "agents"
    verbose_name = "Agents"
