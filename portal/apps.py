from django.apps import AppConfig


class PortalConfig(AppConfig):
    """Users, organizations, memberships and invitations: the tenancy core."""

    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import checks  # noqa: F401  registers the deployment checks
