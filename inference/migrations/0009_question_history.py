"""Earlier turns a client sends with a question (the OpenAI-compatible API, issue 17)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0008_feedback"),
    ]

    operations = [
        migrations.AddField(
            model_name="question",
            name="history",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
