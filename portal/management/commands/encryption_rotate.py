"""Re-encrypt every stored secret under the newest FIELD_ENCRYPTION_KEYS key."""

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection as db_connection
from django.db import transaction

from portal import crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt all encrypted fields under the newest key in FIELD_ENCRYPTION_KEYS "
        "(put the new key first, run this, then drop the old key)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Only report what would change")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        total_changed = 0
        for model in apps.get_models():
            fields = [f for f in model._meta.fields if isinstance(f, crypto.EncryptedTextField)]
            if not fields:
                continue
            table = db_connection.ops.quote_name(model._meta.db_table)
            pk = db_connection.ops.quote_name(model._meta.pk.column or "id")
            columns = ", ".join(db_connection.ops.quote_name(str(f.column)) for f in fields)
            changed = 0
            with db_connection.cursor() as cursor:
                # Raw tokens: the model field would decrypt them on the way out.
                cursor.execute(f"SELECT {pk}, {columns} FROM {table}")  # noqa: S608
                rows = cursor.fetchall()
                for row_pk, *tokens in rows:
                    updates: dict[str, str] = {}
                    for field, token in zip(fields, tokens, strict=True):
                        if token and not crypto.is_under_newest_key(token):
                            updates[str(field.column)] = crypto.rotate(token)
                    if updates and not options["dry_run"]:
                        assignments = ", ".join(
                            f"{db_connection.ops.quote_name(c)} = %s" for c in updates
                        )
                        cursor.execute(
                            f"UPDATE {table} SET {assignments} WHERE {pk} = %s",  # noqa: S608
                            [*updates.values(), row_pk],
                        )
                    changed += bool(updates)
            total_changed += changed
            self.stdout.write(
                f"{model._meta.label}: {changed} of {len(rows)} rows "
                f"{'would be ' if options['dry_run'] else ''}re-encrypted"
            )
        self.stdout.write(f"Done: {total_changed} rows re-encrypted under the newest key.")
