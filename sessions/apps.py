from django.apps import AppConfig


class AgentSessionsConfig(AppConfig):
    """Live sessions of agents. Labelled agent_sessions: `sessions` is django.contrib.sessions'."""

    name = "sessions"
    label = "agent_sessions"
    verbose_name = "Sessions"
