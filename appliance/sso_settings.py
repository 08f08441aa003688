"""Settings for directory sign-in, read from the environment (docs/sign-in.md).

LDAP is on when ``APPLIANCE_LDAP_SERVER_URI`` is set, OIDC when ``APPLIANCE_OIDC_ISSUER`` is
set; both may be on at once, and local accounts always work. Kept apart from settings.py
so that file only gains a few lines, and so python-ldap is imported only where LDAP is used.
"""

from __future__ import annotations

from typing import Any

from appliance.env import Env, SettingError

# APPLIANCE_LDAP_GROUP_TYPE -> (django-auth-ldap class name, default group filter)
GROUP_TYPES = {
    "nested_group_of_names": ("NestedGroupOfNamesType", "(objectClass=groupOfNames)"),
    "group_of_names": ("GroupOfNamesType", "(objectClass=groupOfNames)"),
    "nested_group_of_unique_names": (
        "NestedGroupOfUniqueNamesType",
        "(objectClass=groupOfUniqueNames)",
    ),
    "nested_active_directory": ("NestedActiveDirectoryGroupType", "(objectClass=group)"),
    "active_directory": ("ActiveDirectoryGroupType", "(objectClass=group)"),
    "posix": ("PosixGroupType", "(objectClass=posixGroup)"),
}


def ldap_settings(env: Env) -> dict[str, Any]:
    """The AUTH_LDAP_* settings of django-auth-ldap, or nothing when LDAP is off."""
    uri = env.str("APPLIANCE_LDAP_SERVER_URI", "")
    if not uri:
        return {}
    import ldap
    from django_auth_ldap import config

    user_base = env.str("APPLIANCE_LDAP_USER_BASE")
    group_base = env.str("APPLIANCE_LDAP_GROUP_BASE", user_base)
    type_name = env.choice("APPLIANCE_LDAP_GROUP_TYPE", "nested_group_of_names", tuple(GROUP_TYPES))
    class_name, default_filter = GROUP_TYPES[type_name]
    user_filter = env.str("APPLIANCE_LDAP_USER_FILTER", "(uid=%(user)s)")
    if "%(user)s" not in user_filter:
        raise SettingError("APPLIANCE_LDAP_USER_FILTER must contain %(user)s")
    timeout = env.int("APPLIANCE_LDAP_TIMEOUT_SECONDS", 5, minimum=1)
    options: dict[Any, Any] = {
        ldap.OPT_REFERRALS: 0,  # Active Directory's referrals lead to unreachable hosts
        ldap.OPT_NETWORK_TIMEOUT: timeout,
        ldap.OPT_TIMEOUT: timeout,
    }
    ca_file = env.path("APPLIANCE_LDAP_CA_FILE", None)  # type: ignore[arg-type]
    start_tls = env.bool("APPLIANCE_LDAP_START_TLS", False)
    if ca_file or start_tls or uri.startswith("ldaps://"):
        if ca_file is not None:
            if not ca_file.is_file():
                raise SettingError(f"APPLIANCE_LDAP_CA_FILE={ca_file}: no such file")
            options[ldap.OPT_X_TLS_CACERTFILE] = str(ca_file)
        options[ldap.OPT_X_TLS_REQUIRE_CERT] = ldap.OPT_X_TLS_DEMAND
        # Must come last: makes the options above take effect on this connection.
        options[ldap.OPT_X_TLS_NEWCTX] = 0
    found: dict[str, Any] = {
        "AUTH_LDAP_SERVER_URI": uri,
        "AUTH_LDAP_BIND_DN": env.str("APPLIANCE_LDAP_BIND_DN", ""),
        "AUTH_LDAP_BIND_PASSWORD": env.str("APPLIANCE_LDAP_BIND_PASSWORD", ""),
        "AUTH_LDAP_START_TLS": start_tls,
        "AUTH_LDAP_CONNECTION_OPTIONS": options,
        "AUTH_LDAP_USER_SEARCH": config.LDAPSearch(user_base, ldap.SCOPE_SUBTREE, user_filter),
        "AUTH_LDAP_GROUP_SEARCH": config.LDAPSearch(
            group_base,
            ldap.SCOPE_SUBTREE,
            env.str("APPLIANCE_LDAP_GROUP_FILTER", default_filter),
        ),
        "AUTH_LDAP_GROUP_TYPE": getattr(config, class_name)(),
        "AUTH_LDAP_REQUIRE_GROUP": env.str("APPLIANCE_LDAP_REQUIRE_GROUP", "") or None,
        # The appliance fills in the person itself (appliance/accounts/ldap_backend.py).
        "AUTH_LDAP_ALWAYS_UPDATE_USER": False,
        "AUTH_LDAP_CACHE_TIMEOUT": 0,
        "LDAP_ATTRIBUTES": {
            "email": env.str("APPLIANCE_LDAP_ATTR_EMAIL", "mail"),
            "first_name": env.str("APPLIANCE_LDAP_ATTR_FIRST_NAME", "givenName"),
            "last_name": env.str("APPLIANCE_LDAP_ATTR_LAST_NAME", "sn"),
        },
    }
    return found


def oidc_settings(env: Env) -> dict[str, Any]:
    """OIDC_* settings (the provider is found through its discovery document), or an
    empty OIDC when it is off."""
    issuer = env.str("APPLIANCE_OIDC_ISSUER", "").rstrip("/")
    if not issuer:
        return {"OIDC": {}}
    ca_file = env.path("APPLIANCE_OIDC_CA_FILE", None)  # type: ignore[arg-type]
    if ca_file is not None and not ca_file.is_file():
        raise SettingError(f"APPLIANCE_OIDC_CA_FILE={ca_file}: no such file")
    return {
        "OIDC": {
            "issuer": issuer,
            "discovery_url": env.str(
                "APPLIANCE_OIDC_DISCOVERY_URL", issuer + "/.well-known/openid-configuration"
            ),
            "client_id": env.str("APPLIANCE_OIDC_CLIENT_ID"),
            "client_secret": env.str("APPLIANCE_OIDC_CLIENT_SECRET", ""),
            "provider_name": env.str("APPLIANCE_OIDC_PROVIDER_NAME", "single sign-on"),
            "scopes": env.str("APPLIANCE_OIDC_SCOPES", "openid email profile offline_access"),
            "username_claim": env.str("APPLIANCE_OIDC_USERNAME_CLAIM", "preferred_username"),
            "groups_claim": env.str("APPLIANCE_OIDC_GROUPS_CLAIM", "groups"),
            "verify": str(ca_file) if ca_file is not None else True,
            "timeout": env.int("APPLIANCE_OIDC_TIMEOUT_SECONDS", 10, minimum=1),
            "logout_at_provider": env.bool("APPLIANCE_OIDC_LOGOUT_AT_PROVIDER", True),
        }
    }
