"""Questions about whole documents: the documents a question is about (issue 16)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inference", "0006_lexical_statistics_to_ingest"),
    ]

    operations = [
        migrations.AddField(
            model_name="question",
            name="documents",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
