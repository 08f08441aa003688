# Directory sign-in: group mappings, the link from a person to their directory entry, and
# which memberships a mapping granted.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="from_directory",
            field=models.BooleanField(default=False),
        ),
        migrations.CreateModel(
            name="GroupMapping",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("group", models.CharField(max_length=500)),
                (
                    "role",
                    models.CharField(
                        choices=[
                            ("employee", "Employee"),
                            ("curator", "Curator"),
                            ("auditor", "Auditor"),
                            ("operator", "Operator"),
                        ],
                        max_length=16,
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "department",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="group_mappings",
                        to="accounts.department",
                    ),
                ),
            ],
            options={
                "ordering": ["group", "department__name", "role"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("group", "department", "role"), name="group_mapping_unique"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="DirectoryAccount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(choices=[("ldap", "LDAP"), ("oidc", "OIDC")], max_length=8),
                ),
                ("server", models.CharField(max_length=500)),
                ("external_id", models.CharField(max_length=500)),
                ("groups", models.JSONField(default=list)),
                ("checked_at", models.DateTimeField(blank=True, null=True)),
                ("disabled_at", models.DateTimeField(blank=True, null=True)),
                ("refresh_token", models.TextField(blank=True)),
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="directory_account",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("server", "external_id"), name="directory_identity"
                    )
                ],
            },
        ),
    ]
