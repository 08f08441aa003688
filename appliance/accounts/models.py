from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class User(AbstractUser):
    """A person who signs in. What they may see comes from their memberships."""

    # Blank: the browser's language for pages, the question's own language for answers.
    # The choices are settings.LANGUAGES (pages) and inference.language (answers).
    language = models.CharField(max_length=8, blank=True, default="")
    answer_language = models.CharField(max_length=8, blank=True, default="")

    def roles_in(self, department_id: int) -> set[str]:
        return {m.role for m in self.memberships.all() if m.department_id == department_id}

    def has_role(self, role: str) -> bool:
        return self.memberships.filter(role=role).exists()


class Department(models.Model):
    name = models.CharField(max_length=120, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Days its members' questions, answers and conversations are kept; empty means the
    # organisation's APPLIANCE_CHAT_RETENTION_DAYS. The shortest that applies to a person
    # wins (inference/retention.py).
    chat_retention_days = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    EMPLOYEE = "employee", _("Employee")
    CURATOR = "curator", _("Curator")
    AUDITOR = "auditor", _("Auditor")
    OPERATOR = "operator", _("Operator")


# Roles that grant reading the department's documents. Auditors and operators read none by
# virtue of their role; they need an employee or curator membership for that.
READER_ROLES = (Role.EMPLOYEE, Role.CURATOR)


class Membership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    department = models.ForeignKey(Department, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    # Granted by a group mapping at a directory sign-in (and taken away by the next one
    # when the group no longer says so); memberships an operator gave are left alone.
    from_directory = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "department", "role"], name="membership_unique_role"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} in {self.department}"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the JSON API. Only its hash is stored; the token is shown once."""

    PREFIX = "apl_"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=120, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"token {self.name or self.pk} of {self.user}"

    @classmethod
    def new_raw_key(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)


class GroupMapping(models.Model):
    """A directory group (an LDAP group's DN, or a value of the OIDC ``groups`` claim) that
    gives its members a role in a department. Applied at every directory sign-in, so the
    directory stays the source of truth for these memberships (appliance/accounts/directory.py).
    Groups are compared without regard to case, as LDAP compares DNs."""

    group = models.CharField(max_length=500)
    department = models.ForeignKey(
        Department, on_delete=models.CASCADE, related_name="group_mappings"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group", "department__name", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["group", "department", "role"], name="group_mapping_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.group} → {self.role} of {self.department}"


class DirectoryAccount(models.Model):
    """Ties a person to their entry in a directory: an LDAP server (``server`` is its URI,
    ``external_id`` the entry's DN) or an OIDC provider (the issuer, and the ``sub`` claim).

    ``checked_at`` is when the directory last said the account is enabled (a sign-in or a
    re-check); ``disabled_at`` is set when it said the account is gone or disabled, which
    stops the person's API tokens until a directory sign-in succeeds again."""

    LDAP = "ldap"
    OIDC = "oidc"

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="directory_account")
    kind = models.CharField(max_length=8, choices=[(LDAP, "LDAP"), (OIDC, "OIDC")])
    server = models.CharField(max_length=500)
    external_id = models.CharField(max_length=500)
    groups = models.JSONField(default=list)
    checked_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # OIDC only: the latest refresh token, used to re-check the account at the provider.
    refresh_token = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "external_id"], name="directory_identity")
        ]

    def __str__(self) -> str:
        return f"{self.user} at {self.server}"
