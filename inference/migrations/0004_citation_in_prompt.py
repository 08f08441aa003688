from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("inference", "0003_lexical_statistics")]

    operations = [
        migrations.AddField(
            model_name="citation",
            name="in_prompt",
            field=models.BooleanField(default=True),
        ),
    ]
