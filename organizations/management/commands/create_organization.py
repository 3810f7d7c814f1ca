"""Create an organization and its owner (creating the user if needed); print the slug."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from organizations import services
from portal.errors import ApplicationError
from portal.models import User


class Command(BaseCommand):
    help = "Create an organization owned by EMAIL (created if missing) and print its slug."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Organization name")
        parser.add_argument("--owner-email", required=True, help="Owner's email")
        parser.add_argument(
            "--owner-password",
            help="Password for a newly created owner (without it, the owner uses password reset)",
        )

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        email = options["owner_email"]
        try:
            owner = User.objects.filter(email__iexact=email.strip()).first()
            if owner is None:
                owner = services.user_create(email=email, password=options["owner_password"])
            elif options["owner_password"]:
                raise CommandError(
                    f"{owner.email} already exists; its password was left unchanged. "
                    "Run again without --owner-password."
                )
            org = services.organization_create(name=options["name"], owner=owner)
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(org.slug)
