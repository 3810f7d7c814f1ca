"""Create a sandbox account and print its API secret (only the secret, so scripts capture it)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from sandbox import catalog, services
from sandbox.errors import SandboxError


class Command(BaseCommand):
    help = "Create a sandbox account (a test-mode bitHuman API secret) and print the secret."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--plan", choices=catalog.PLANS, help="Plan tier (rate limits)")
        parser.add_argument("--credits", type=int, help="Starting credit balance")
        parser.add_argument("--label", default="", help="Who uses it (shown in the admin)")
        parser.add_argument("--latency-ms", type=int, help="Delay added to each API answer")
        parser.add_argument("--error-rate", type=float, help="Share of requests answered 503")
        parser.add_argument("--force-429-rate", type=float, help="Share of requests answered 429")
        parser.add_argument(
            "--time-scale", type=float, help="Generation speed-up (0 freezes the clock)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        knobs = {
            name: options[name]
            for name in ("latency_ms", "error_rate", "force_429_rate", "time_scale")
            if options[name] is not None
        }
        try:
            with transaction.atomic():
                account, secret = services.sandbox_account_create(
                    plan=options["plan"], credits=options["credits"], label=options["label"]
                )
                if knobs:
                    services.sandbox_account_configure(account=account, changes=knobs)
        except SandboxError as error:
            raise CommandError(error.message) from None
        self.stdout.write(secret)
