from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Action(models.TextChoices):
    LOGIN = "login", _("Signed in")
    LOGIN_FAILED = "login_failed", _("Failed sign-in")
    LOGOUT = "logout", _("Signed out")
    ACCESS_DENIED = "access_denied", _("Access denied")
    QUESTION = "question", _("Asked a question")
    ANSWER = "answer", _("Answer given")
    UPLOAD = "upload", _("Uploaded a document")
    INGEST_DONE = "ingest_done", _("Ingestion finished")
    INGEST_FAILED = "ingest_failed", _("Ingestion failed")
    DOCUMENT_DELETE = "document_delete", _("Deleted a document")
    COLLECTION_CREATE = "collection_create", _("Created a collection")
    COLLECTION_DELETE = "collection_delete", _("Deleted a collection")
    REEMBED_START = "reembed_start", _("Started re-embedding a collection")
    REEMBED_DONE = "reembed_done", _("Re-embedded a collection")
    SHARE = "share", _("Shared a collection")
    UNSHARE = "unshare", _("Unshared a collection")
    DEPARTMENT_CREATE = "department_create", _("Created a department")
    USER_CREATE = "user_create", _("Created a user")
    MEMBERSHIP_ADD = "membership_add", _("Added a membership")
    MEMBERSHIP_REMOVE = "membership_remove", _("Removed a membership")
    TOKEN_CREATE = "token_create", _("Created an API token")
    SETTINGS_CHANGE = "settings_change", _("Changed a setting")
    AUDIT_EXPORT = "audit_export", _("Exported the audit log")
    AUDIT_PRUNE = "audit_prune", _("Pruned the audit log (retention)")
    AUDIT_ERASE = "audit_erase", _("Erased a person from the audit log")
    USER_DEACTIVATE = "user_deactivate", _("Deactivated a user")
    USER_ACTIVATE = "user_activate", _("Reactivated a user")
    ROLE_CHANGE = "role_change", _("Changed a role")
    GOLDEN_SET_VERSION = "golden_set_version", _("Added a golden set version")
    PILOT_CONFIGURATION = "pilot_configuration", _("Saved a pilot configuration")
    PILOT_RUN_START = "pilot_run_start", _("Started a pilot run")
    PILOT_RUN_END = "pilot_run_end", _("A pilot run ended")
    PILOT_RUN_CANCEL = "pilot_run_cancel", _("Cancelled a pilot run")
    GOLDEN_DRAFTS = "golden_drafts", _("Drafted or reviewed golden set questions")
    COLLECTION_UPDATE = "collection_update", _("Changed a collection's description or suggestions")
    GROUP_MAPPING_ADD = "group_mapping_add", _("Mapped a directory group")
    GROUP_MAPPING_REMOVE = "group_mapping_remove", _("Removed a directory group mapping")
    DIRECTORY_CHECK = "directory_check", _("The directory disabled an account")
    FEEDBACK = "feedback", _("Gave feedback on an answer")
    CONVERSATION_DELETE = "conversation_delete", _("Deleted a conversation")
    CHAT_PRUNE = "chat_prune", _("Deleted old conversations (chat retention)")


class AuditEvent(models.Model):
    """One row per audited act, chained by hashes (see ``appliance.audit.chain``).

    There is deliberately no foreign key to users or documents: the table is append-only,
    so nothing may cascade into it. The database refuses UPDATE, DELETE and TRUNCATE for
    the application's role (migration 0002).
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(db_index=True)
    actor_id = models.BigIntegerField(null=True, db_index=True)
    actor = models.CharField(max_length=150, blank=True, db_index=True)
    actor_departments = models.JSONField(default=list)
    ip = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    # The person the act is about (whose membership, account or token changed), by name.
    subject = models.CharField(max_length=150, blank=True, db_index=True)
    # Identity (actor, subject, ip, user agent) enters the hash only through this salted digest, so
    # a person can be pseudonymised (GDPR) without breaking the chain.
    identity_salt = models.CharField(max_length=32, blank=True)
    identity_digest = models.CharField(max_length=64)
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["action", "created_at"])]

    def __str__(self) -> str:
        return f"#{self.id} {self.action} by {self.actor or 'system'}"


class AuditAnchor(models.Model):
    """Where the log starts after retention pruning: the last pruned row's id and hash.

    The first remaining row names that hash as its predecessor, so the chain still verifies
    from here. Each anchor is confirmed by the ``audit_prune`` event written in the same
    transaction. Append-only like the log itself (migration 0003).
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField()
    last_pruned_id = models.BigIntegerField()
    last_pruned_hash = models.CharField(max_length=64)
    last_pruned_created_at = models.DateTimeField()
    rows_pruned = models.BigIntegerField()
    retention_days = models.IntegerField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"anchor after #{self.last_pruned_id}"
