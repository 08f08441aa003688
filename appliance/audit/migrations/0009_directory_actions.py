# Generated for directory sign-in: group mapping changes and directory checks are audited.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0008_collection_update_action"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("login", "Signed in"),
                    ("login_failed", "Failed sign-in"),
                    ("logout", "Signed out"),
                    ("access_denied", "Access denied"),
                    ("question", "Asked a question"),
                    ("answer", "Answer given"),
                    ("upload", "Uploaded a document"),
                    ("ingest_done", "Ingestion finished"),
                    ("ingest_failed", "Ingestion failed"),
                    ("document_delete", "Deleted a document"),
                    ("collection_create", "Created a collection"),
                    ("collection_delete", "Deleted a collection"),
                    ("reembed_start", "Started re-embedding a collection"),
                    ("reembed_done", "Re-embedded a collection"),
                    ("share", "Shared a collection"),
                    ("unshare", "Unshared a collection"),
                    ("department_create", "Created a department"),
                    ("user_create", "Created a user"),
                    ("membership_add", "Added a membership"),
                    ("membership_remove", "Removed a membership"),
                    ("token_create", "Created an API token"),
                    ("settings_change", "Changed a setting"),
                    ("audit_export", "Exported the audit log"),
                    ("audit_prune", "Pruned the audit log (retention)"),
                    ("audit_erase", "Erased a person from the audit log"),
                    ("user_deactivate", "Deactivated a user"),
                    ("user_activate", "Reactivated a user"),
                    ("role_change", "Changed a role"),
                    ("golden_set_version", "Added a golden set version"),
                    ("pilot_configuration", "Saved a pilot configuration"),
                    ("pilot_run_start", "Started a pilot run"),
                    ("pilot_run_end", "A pilot run ended"),
                    ("pilot_run_cancel", "Cancelled a pilot run"),
                    ("golden_drafts", "Drafted or reviewed golden set questions"),
                    ("collection_update", "Changed a collection's description or suggestions"),
                    ("group_mapping_add", "Mapped a directory group"),
                    ("group_mapping_remove", "Removed a directory group mapping"),
                    ("directory_check", "The directory disabled an account"),
                ],
                db_index=True,
                max_length=32,
            ),
        ),
    ]
