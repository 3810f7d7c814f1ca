from django.apps import AppConfig


class ActivityConfig(AppConfig):
    """The organization's audit log, outbound webhooks and dashboard."""

    name = "activity"
    verbose_name = "Activity"

    def ready(self) -> None:
        from activity import signals

        signals.admin_bulk_deletions_hook()
