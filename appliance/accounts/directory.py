"""Directory sign-in (LDAP/Active Directory and OIDC): what both have in common.

A directory says who a person is and which groups they are in; group mappings
(``GroupMapping``) turn those groups into department memberships. The mapping is applied
at every directory sign-in and at every re-check of an API token, so a person the
directory removes from a group loses the department then, and a person it disables can
no longer sign in or use their tokens. Memberships an operator gave by hand are never
touched. Local accounts (the break-glass operator) do not depend on any directory.

Every change is audited in its own transaction, with the directory it came from
(``source``: the LDAP server's URI or the OIDC issuer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from appliance.accounts.models import (
    DirectoryAccount,
    GroupMapping,
    Membership,
    Role,
    User,
)
from appliance.audit import actions as audit
from appliance.audit.models import Action

logger = logging.getLogger(__name__)


class DirectoryRefused(Exception):
    """The directory, or the appliance's rules for it, refuse this sign-in; the message is
    shown to the person as it is."""


class DirectoryUnreachable(Exception):
    """The directory could not be asked (down, unreachable, refused the service account)."""


@dataclass
class Identity:
    """What a directory said about a person at sign-in or at a re-check."""

    kind: str  # DirectoryAccount.LDAP or .OIDC
    server: str  # the LDAP server URI or the OIDC issuer
    external_id: str  # the entry's DN, or the OIDC subject
    username: str
    groups: list[str] = field(default_factory=list)
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    refresh_token: str = ""


def normalise(group: str) -> str:
    """Groups compare without regard to case or surrounding spaces (as LDAP DNs do)."""
    return group.strip().casefold()


def mapped_memberships(groups: list[str]) -> dict[tuple[int, str], str]:
    """(department id, role) -> the group that grants it, for the given groups."""
    wanted = {normalise(group) for group in groups}
    granted: dict[tuple[int, str], str] = {}
    for mapping in GroupMapping.objects.all():
        if normalise(mapping.group) in wanted:
            granted.setdefault((mapping.department_id, mapping.role), mapping.group)
    return granted


def sync_memberships(user: User, groups: list[str], source: str) -> tuple[int, int]:
    """Makes the person's directory-granted memberships what the mappings say for these
    groups. One audit row per membership added or removed. Runs inside the caller's
    transaction. Returns (added, removed)."""
    wanted = mapped_memberships(groups)
    current = {
        (m.department_id, m.role): m
        for m in Membership.objects.select_for_update()
        .select_related("department")
        .filter(user=user)
    }
    added = removed = 0
    for (department_id, role), group in wanted.items():
        if (department_id, role) in current:
            continue
        membership = Membership.objects.create(
            user=user, department_id=department_id, role=role, from_directory=True
        )
        added += 1
        audit.record(
            Action.MEMBERSHIP_ADD,
            actor_name=f"(directory: {source})",
            obj=user,
            subject=user,
            details={
                "department": membership.department.name,
                "role": role,
                "source": source,
                "group": group,
            },
        )
    for key, membership in current.items():
        if not membership.from_directory or key in wanted:
            continue
        membership.delete()
        removed += 1
        audit.record(
            Action.MEMBERSHIP_REMOVE,
            actor_name=f"(directory: {source})",
            obj=user,
            subject=user,
            details={
                "department": membership.department.name,
                "role": membership.role,
                "source": source,
                "reason": "no longer in a mapped group",
            },
        )
    return added, removed


def user_for_identity(identity: Identity) -> User:
    """Finds or creates the person a directory vouched for, records what it said and applies
    the group mappings, all in one transaction. A local account of the same name is never
    taken over: that would let a directory entry sign in as the break-glass operator."""
    with transaction.atomic():
        account = (
            DirectoryAccount.objects.select_for_update()
            .select_related("user")
            .filter(server=identity.server, external_id=identity.external_id)
            .first()
        )
        if account is None:
            user = _new_directory_user(identity)
            account = DirectoryAccount(
                user=user,
                kind=identity.kind,
                server=identity.server,
                external_id=identity.external_id,
            )
        else:
            user = account.user
        if not user.is_active:
            raise DirectoryRefused(
                _(
                    "Your account here has been deactivated by an operator. "
                    "Ask them to reactivate it."
                )
            )
        changed = [
            name
            for name in ("email", "first_name", "last_name")
            if getattr(identity, name) and getattr(user, name) != getattr(identity, name)
        ]
        for name in changed:
            setattr(user, name, getattr(identity, name))
        if changed:
            user.save(update_fields=changed)
        account.groups = sorted(set(identity.groups))
        account.checked_at = timezone.now()
        account.disabled_at = None
        if identity.refresh_token:
            account.refresh_token = identity.refresh_token
        account.save()
        sync_memberships(user, identity.groups, identity.server)
    user.sign_in_source = identity.server  # type: ignore[attr-defined]
    return user


def _new_directory_user(identity: Identity) -> User:
    username = identity.username.strip()[:150]
    if not username:
        raise DirectoryRefused(_("The directory did not say what your username is."))
    existing = User.objects.filter(username__iexact=username).first()
    if existing is not None:
        logger.warning(
            "refused directory sign-in of %s from %s: a local account has that name",
            username,
            identity.server,
        )
        raise DirectoryRefused(
            _(
                "An account called “%(name)s” already exists here and is not linked to "
                "this directory. An operator has to rename or remove it first."
            )
            % {"name": username}
        )
    user = User(
        username=username,
        email=identity.email,
        first_name=identity.first_name[:150],
        last_name=identity.last_name[:150],
    )
    user.set_unusable_password()
    user.save()
    audit.record(
        Action.USER_CREATE,
        actor_name=f"(directory: {identity.server})",
        obj=user,
        subject=user,
        details={"source": identity.server, "kind": identity.kind},
    )
    return user


def is_local_name(username: str) -> bool:
    """A local account of that name exists (one not linked to any directory)."""
    return User.objects.filter(username__iexact=username, directory_account__isnull=True).exists()


# --- changing the mappings ----------------------------------------------------------------


def add_mapping(actor: Any, group: str, department: Any, role: str) -> tuple[GroupMapping, bool]:
    """Maps ``group`` to ``role`` in ``department``. People the directory last reported in
    that group get the membership now (audited each), not only at their next sign-in."""
    group = group.strip()
    if not group or len(group) > 500:
        raise ValueError(_("Name the directory group (an LDAP group DN or an OIDC group value)."))
    if role not in Role.values:
        raise ValueError(
            _("Unknown role “%(role)s”; use one of %(roles)s.")
            % {"role": role, "roles": ", ".join(Role.values)}
        )
    with transaction.atomic():
        existing = [
            m
            for m in GroupMapping.objects.filter(department=department, role=role)
            if normalise(m.group) == normalise(group)
        ]
        if existing:
            return existing[0], False
        mapping = GroupMapping.objects.create(group=group, department=department, role=role)
        audit.record(
            Action.GROUP_MAPPING_ADD,
            actor=actor if getattr(actor, "pk", None) else None,
            actor_name="" if getattr(actor, "pk", None) else str(actor or ""),
            obj=mapping,
            details=_summary(mapping),
        )
        _resync_members_of(group)
    return mapping, True


def remove_mapping(actor: Any, mapping: GroupMapping) -> None:
    """Removes a mapping; the memberships it alone granted go now (audited each)."""
    with transaction.atomic():
        summary = _summary(mapping)
        mapping_id = mapping.pk
        mapping.delete()
        audit.record(
            Action.GROUP_MAPPING_REMOVE,
            actor=actor if getattr(actor, "pk", None) else None,
            actor_name="" if getattr(actor, "pk", None) else str(actor or ""),
            object_type="groupmapping",
            object_id=mapping_id,
            details=summary,
        )
        _resync_members_of(summary["group"])


def _resync_members_of(group: str) -> None:
    key = normalise(group)
    for account in DirectoryAccount.objects.select_related("user").filter(disabled_at__isnull=True):
        if key in {normalise(g) for g in account.groups}:
            sync_memberships(account.user, account.groups, account.server)


def _summary(mapping: GroupMapping) -> dict[str, Any]:
    return {"group": mapping.group, "department": mapping.department.name, "role": mapping.role}
