from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ingest", "0010_collection_suggested_questions"),
    ]

    operations = [
        migrations.AlterField(
            model_name="collection",
            name="language",
            field=models.CharField(
                choices=[
                    ("english", "English"),
                    ("norwegian", "Norwegian"),
                    ("german", "German"),
                    ("french", "French"),
                    ("spanish", "Spanish"),
                    ("simple", "Other (no stemming)"),
                    ("auto", "Detected per passage"),
                ],
                default="english",
                max_length=16,
            ),
        ),
    ]
