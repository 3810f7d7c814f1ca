"""Revision 1 of the prompt history is the prompt an agent was created with (issue 16, item 9).

Agents made before it with no revision get theirs from their prompt (which is still the
creation prompt, since no edit was ever recorded); agents already edited cannot get it back.
"""

from django.db import migrations


def first_revisions_add(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    PromptRevision = apps.get_model("agents", "PromptRevision")
    unedited = (
        Agent.objects.exclude(system_prompt="")
        .filter(prompt_revisions__isnull=True)
        .values_list("pk", "system_prompt", "created_by_id", "created_at")
    )
    batch = []
    for pk, text, author_id, created_at in unedited.iterator(chunk_size=2000):
        batch.append(
            PromptRevision(
                agent_id=pk, text=text, author_id=author_id, accepted=True, created_at=created_at
            )
        )
        if len(batch) >= 2000:
            PromptRevision.objects.bulk_create(batch)
            batch = []
    PromptRevision.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [("agents", "0008_agent_status_overdue")]

    operations = [migrations.RunPython(first_revisions_add, migrations.RunPython.noop)]
