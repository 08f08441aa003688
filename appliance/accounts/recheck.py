"""Re-checking directory accounts behind API tokens (docs/sign-in.md).

A token of a directory account is honoured while the directory said the account is
enabled within the last DIRECTORY_RECHECK_MINUTES; after that the directory is asked again
(LDAP: a search as the service account; OIDC: a refresh-token grant and userinfo). Its
answer applies the group mappings as a sign-in does; a "no" disables the account's tokens
and removes its directory memberships until the next directory sign-in.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from appliance.accounts import directory, ldap_backend, oidc
from appliance.accounts.models import DirectoryAccount, User
from appliance.audit import actions as audit
from appliance.audit.models import Action

logger = logging.getLogger(__name__)


def recheck_due(account: DirectoryAccount) -> bool:
    minutes = settings.DIRECTORY_RECHECK_MINUTES
    return account.checked_at is None or timezone.now() - account.checked_at > timedelta(
        minutes=minutes
    )


def token_user_allowed(user: User) -> bool:
    """Whether a token of ``user`` may be used now. Local accounts: yes. Directory accounts:
    when the directory said so within the last DIRECTORY_RECHECK_MINUTES; otherwise it is
    asked again now. A directory that cannot be asked refuses the token (fails closed) and
    is asked again on the next request."""
    account = DirectoryAccount.objects.filter(user=user).first()
    if account is None:
        return True
    if account.disabled_at is not None:
        return False
    if not recheck_due(account):
        return True
    try:
        identity = _ask_directory(account)
    except directory.DirectoryUnreachable as exc:
        logger.warning("could not re-check %s at %s: %s", user, account.server, exc)
        return False
    if identity is None:
        disable(account, "the directory no longer has this account, or it is disabled")
        return False
    with transaction.atomic():
        DirectoryAccount.objects.filter(pk=account.pk).update(
            groups=sorted(set(identity.groups)),
            checked_at=timezone.now(),
            **({"refresh_token": identity.refresh_token} if identity.refresh_token else {}),
        )
        directory.sync_memberships(user, identity.groups, account.server)
    return True


def disable(account: DirectoryAccount, reason: str) -> None:
    """The directory said the account is gone or disabled: its tokens stop working and its
    directory memberships go, until a directory sign-in succeeds again."""
    with transaction.atomic():
        DirectoryAccount.objects.filter(pk=account.pk).update(disabled_at=timezone.now())
        directory.sync_memberships(account.user, [], account.server)
        audit.record(
            Action.DIRECTORY_CHECK,
            actor_name=f"(directory: {account.server})",
            obj=account.user,
            subject=account.user,
            details={"source": account.server, "result": "disabled", "reason": reason},
        )


def _ask_directory(account: DirectoryAccount) -> directory.Identity | None:
    if account.kind == DirectoryAccount.LDAP:
        return ldap_backend.lookup(account)
    return oidc.recheck(account)
