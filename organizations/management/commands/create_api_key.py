"""Create an API key for an organization and print it (once)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from organizations import apikeys
from portal.errors import ApplicationError
from portal.models import ApiScope, Organization


class Command(BaseCommand):
    help = "Create an API key for the organization ORG and print the full key once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organization slug")
        parser.add_argument("--name", required=True, help="What the key is for")
        parser.add_argument(
            "--scopes",
            nargs="+",
            default=list(ApiScope.values),
            choices=list(ApiScope.values),
            help="Scopes (default: all)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"No organization with slug {options['org']!r}.")
        try:
            issued = apikeys.api_key_create(
                org=org, name=options["name"], scopes=options["scopes"], created_by=None
            )
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(issued.key)
