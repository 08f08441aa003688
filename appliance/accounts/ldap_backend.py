"""Sign-in against LDAP or Active Directory (django-auth-ldap).

The person's password is checked by binding as their entry (found with the service
account's search, ``APPLIANCE_LDAP_USER_FILTER``, which is also where disabled accounts are
left out); their groups, nested ones included, come from the configured group type. The
appliance then creates or finds the person and applies the group mappings itself
(appliance/accounts/directory.py), so django-auth-ldap never writes users on its own.

When the directory cannot be reached the sign-in fails with a message that says so
(``directory_problem`` on the request, shown by the login page); local accounts are
checked first and never depend on the directory.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import ldap
from django.conf import settings
from django.dispatch import receiver
from django.utils.translation import gettext_lazy
from django_auth_ldap.backend import LDAPBackend, _LDAPUser, ldap_error

from appliance.accounts import directory
from appliance.accounts.models import DirectoryAccount

logger = logging.getLogger(__name__)

UNREACHABLE = gettext_lazy(
    "The directory cannot be reached right now, so directory accounts cannot sign in. "
    "Try again in a few minutes; if it lasts, tell your IT department."
)

# The last LDAP error django-auth-ldap reported in this context (it catches them itself).
_last_error: contextvars.ContextVar[Exception | None] = contextvars.ContextVar(
    "ldap_last_error", default=None
)


@receiver(ldap_error)
def _remember_error(sender: Any, context: str, exception: Exception, **kwargs: Any) -> None:
    _last_error.set(exception)


def _first(attrs: dict[str, list[str]] | None, name: str) -> str:
    values = (attrs or {}).get(name) or (attrs or {}).get(name.lower()) or []
    return str(values[0]) if values else ""


def identity_of(ldap_user: Any, username: str) -> directory.Identity:
    names = getattr(settings, "LDAP_ATTRIBUTES", {})
    attrs = ldap_user.attrs
    return directory.Identity(
        kind=DirectoryAccount.LDAP,
        server=settings.AUTH_LDAP_SERVER_URI,
        external_id=ldap_user.dn,
        username=username.lower(),
        groups=sorted(ldap_user.group_dns),
        email=_first(attrs, names.get("email", "mail")),
        first_name=_first(attrs, names.get("first_name", "givenName")),
        last_name=_first(attrs, names.get("last_name", "sn")),
    )


class DirectoryLDAPBackend(LDAPBackend):
    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        # A local account's name is never looked up in the directory: the model backend
        # (first in AUTHENTICATION_BACKENDS) alone decides about it.
        if not username or directory.is_local_name(username.strip()):
            return None
        token = _last_error.set(None)
        try:
            user = super().authenticate(request, username=username, password=password, **kwargs)
            problem = _last_error.get()
        finally:
            _last_error.reset(token)
        if user is None and problem is not None and request is not None:
            logger.warning("LDAP sign-in of %s failed: %s", username, problem)
            request.directory_problem = str(UNREACHABLE)
        return user

    def get_or_build_user(self, username: str, ldap_user: Any) -> tuple[Any, bool]:
        """Called once the password is right: the appliance's own person, mapped."""
        try:
            user = directory.user_for_identity(identity_of(ldap_user, username))
        except directory.DirectoryRefused as exc:
            request = getattr(ldap_user, "_request", None)
            if request is not None:
                request.directory_problem = str(exc)
            raise ldap_user.AuthenticationFailed(str(exc)) from exc
        return user, False


def lookup(account: DirectoryAccount) -> directory.Identity | None:
    """Asks the directory (as the service account) about a person who signed in before:
    their identity and groups now, or None when the entry is gone, disabled (left out by
    the user filter), moved, or outside APPLIANCE_LDAP_REQUIRE_GROUP."""
    backend = DirectoryLDAPBackend()
    # The ldap name the person signed in with is their username here.
    ldap_user = _LDAPUser(backend, username=account.user.get_username())
    token = _last_error.set(None)
    try:
        # django-auth-ldap reports (and swallows) errors of the user search: a missing DN
        # is "not found" only when nothing went wrong.
        dn = ldap_user.dn
        if _last_error.get() is not None:
            raise directory.DirectoryUnreachable(str(_last_error.get()))
        if dn is None or dn.casefold() != account.external_id.casefold():
            return None
        required = backend.settings.REQUIRE_GROUP
        if required and not ldap_user._get_groups().is_member_of(required):
            return None
        return identity_of(ldap_user, account.user.get_username())
    except ldap.LDAPError as exc:
        raise directory.DirectoryUnreachable(str(exc)) from exc
    finally:
        _last_error.reset(token)
