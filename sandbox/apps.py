from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """A faithful simulator of the bitHuman REST API, served at /sandbox/ over real HTTP."""

    name = "sandbox"
    label = "sandbox"
    verbose_name = "bitHuman sandbox"
