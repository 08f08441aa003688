"""The person an act is about, beside the actor, so that erasure reaches it too.

Adding a column fires no row trigger, so the append-only protection is untouched; rows
written before this have an empty subject and hash exactly as before.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_anchor_and_actions")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="subject",
            field=models.CharField(blank=True, db_index=True, max_length=150),
        ),
    ]
