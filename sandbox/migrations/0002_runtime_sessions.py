"""Rooms are runtime sessions: an id, whether the avatar worker joined, the terminate reason."""

import uuid

from django.db import migrations, models


def session_ids_fill(apps, schema_editor):
    room_model = apps.get_model("sandbox", "SandboxRoom")
    for room in room_model.objects.filter(session_id__isnull=True).only("pk"):
        room_model.objects.filter(pk=room.pk).update(session_id=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [("sandbox", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="sandboxroom",
            name="session_id",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(session_ids_fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="sandboxroom",
            name="session_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AddField(
            model_name="sandboxroom",
            name="has_worker",
            field=models.BooleanField(default=True),
        ),
        migrations.AddField(
            model_name="sandboxroom",
            name="terminated_reason",
            field=models.CharField(blank=True, max_length=500),
        ),
    ]
