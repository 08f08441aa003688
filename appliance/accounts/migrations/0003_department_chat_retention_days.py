"""A department's own chat retention (issue 19)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_directory"),
    ]

    operations = [
        migrations.AddField(
            model_name="department",
            name="chat_retention_days",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
    ]
