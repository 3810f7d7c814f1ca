"""Idempotency keys belong to one API key (they were shared by the organization's keys).

The stored answers are a 24-hour replay cache with no owner to attribute them to, so they are
dropped: a retry after the deploy runs once more, as after the 24 hours."""

import django.db.models.deletion
from django.db import migrations, models


def forget_answers(apps, schema_editor):
    apps.get_model("portal", "ApiIdempotencyKey").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0006_organization_require_two_factor"),
    ]

    operations = [
        migrations.RunPython(forget_answers, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="apiidempotencykey",
            name="api_idempotency_unique",
        ),
        migrations.AddField(
            model_name="apiidempotencykey",
            name="api_key",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="portal.apikey",
            ),
        ),
        migrations.AlterField(
            model_name="apiidempotencykey",
            name="api_key",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="portal.apikey",
            ),
        ),
        migrations.AddConstraint(
            model_name="apiidempotencykey",
            constraint=models.UniqueConstraint(
                fields=("api_key", "key"), name="api_idempotency_key_unique"
            ),
        ),
    ]
