from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_department_chat_retention_days")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="language",
            field=models.CharField(blank=True, default="", max_length=8),
        ),
        migrations.AddField(
            model_name="user",
            name="answer_language",
            field=models.CharField(blank=True, default="", max_length=8),
        ),
    ]
