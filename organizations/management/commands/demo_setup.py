"""Create the demo organization and owner for `make run`, printing the credentials once."""

import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from organizations import services
from portal.models import Organization, User

DEMO_EMAIL = "demo@example.com"
DEMO_ORG = "Demo Company"


class Command(BaseCommand):
    help = "Create a demo organization and owner if missing; print the login once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-password", action="store_true", help="Give the demo owner a new password"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        url = settings.SITE_URL + "/"
        user = User.objects.filter(email__iexact=DEMO_EMAIL).first()
        if user is not None and not options["reset_password"]:
            self.stdout.write(
                f"Demo owner {DEMO_EMAIL} exists; log in at {url} with the password printed "
                "when it was created (`make demo-password` prints a new one)."
            )
            return
        password = secrets.token_urlsafe(12)
        if user is None:
            user = services.user_create(email=DEMO_EMAIL, password=password, full_name="Demo Owner")
            if not Organization.objects.filter(membership__user=user).exists():
                services.organization_create(name=DEMO_ORG, owner=user)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        line = "=" * 64
        self.stdout.write(
            f"{line}\n  bitHuman Portal is starting at {url}\n"
            f"  Email:    {DEMO_EMAIL}\n  Password: {password}\n"
            f"  (printed once; `make demo-password` sets a new one)\n{line}"
        )
