"""Sign-in through an OpenID Connect provider (Authlib's client).

The authorisation code flow with PKCE (S256): the provider is found through its discovery
document, and Authlib checks the ID token's signature (the provider's JWKS), issuer,
audience, expiry and nonce; the state, nonce and code verifier live in the person's
session and are used once. Groups come from the ``groups`` claim (APPLIANCE_OIDC_GROUPS_CLAIM)
of the ID token or, when it is not there, of the userinfo answer.

Re-checking an account behind API tokens (appliance/accounts/directory.py): the refresh
token the provider gave at sign-in is exchanged for new tokens, and the userinfo endpoint
is asked for the person's groups with the new access token. A provider that refuses the
refresh (the account was disabled or deleted, the session revoked) has said the account
is no longer enabled; without a refresh token (the provider gave none) the tokens work
only until DIRECTORY_RECHECK_MINUTES after the last sign-in in the browser.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.django_client import DjangoOAuth2App, OAuth
from django.conf import settings
from django.utils.translation import gettext_lazy
from joserfc.errors import JoseError

from appliance.accounts import directory
from appliance.accounts.models import DirectoryAccount

logger = logging.getLogger(__name__)

_clients: dict[tuple[Any, ...], DjangoOAuth2App] = {}


def configured() -> bool:
    return bool(getattr(settings, "OIDC", {}))


def config() -> dict[str, Any]:
    return settings.OIDC


def client() -> DjangoOAuth2App:
    """The provider's client, one per configuration (its discovery document and keys are
    fetched once and kept; unknown signing keys make it fetch the keys again)."""
    conf = config()
    key = tuple(sorted((k, str(v)) for k, v in conf.items()))
    found = _clients.get(key)
    if found is None:
        registry = OAuth()
        found = registry.register(
            name="appliance",
            client_id=conf["client_id"],
            client_secret=conf["client_secret"] or None,
            server_metadata_url=conf["discovery_url"],
            client_kwargs={
                "scope": conf["scopes"],
                "code_challenge_method": "S256",
                "default_timeout": conf["timeout"],
                "verify": conf["verify"],
                # A client without a secret (a public client) sends only its id.
                "token_endpoint_auth_method": (
                    "client_secret_post" if conf["client_secret"] else "none"
                ),
            },
        )
        _clients.clear()
        _clients[key] = found
    return found


def metadata() -> dict[str, Any]:
    """The discovery document, refused when it names another issuer than configured (the
    ID tokens' ``iss`` is checked against it)."""
    found = client().load_server_metadata()
    if str(found.get("issuer", "")).rstrip("/") != config()["issuer"]:
        raise directory.DirectoryRefused(
            "The sign-in provider's discovery document names another issuer than configured."
        )
    return found


class SignInFailed(Exception):
    """The provider's answer was refused; the message is for the person, the log has why."""


# Translated when used (``PROBLEM % {"name": ...}``), in the language of the request.
PROBLEM = gettext_lazy("Signing in with %(name)s did not work. Please try again.")
UNREACHABLE = gettext_lazy(
    "%(name)s cannot be reached right now. Try again in a few minutes; local accounts can "
    "still sign in with their password."
)


def finish_sign_in(request: Any) -> Any:
    """Completes the flow at the callback: exchanges the code (with the PKCE verifier),
    checks the ID token and returns the person, mapped. Raises SignInFailed."""
    name = config()["provider_name"]
    try:
        metadata()
        # Authlib checks the audience only through "azp"; the ID token must name this
        # client among its audiences (OIDC Core 3.1.3.7), so both are required here.
        token = client().authorize_access_token(request, claims_options=_checks())
    except requests.RequestException as exc:
        logger.warning("OIDC provider unreachable: %s", exc)
        raise SignInFailed(UNREACHABLE % {"name": name}) from exc
    except (OAuthError, JoseError, directory.DirectoryRefused, ValueError, KeyError) as exc:
        logger.warning("OIDC sign-in refused: %r", exc)
        raise SignInFailed(PROBLEM % {"name": name}) from exc
    claims = dict(token.get("userinfo") or {})
    if not claims.get("sub"):
        raise SignInFailed(PROBLEM % {"name": name})
    try:
        identity = _identity(claims, token)
    except requests.RequestException as exc:
        raise SignInFailed(UNREACHABLE % {"name": name}) from exc
    except (OAuthError, ValueError) as exc:
        logger.warning("OIDC userinfo refused: %r", exc)
        raise SignInFailed(PROBLEM % {"name": name}) from exc
    request.session["oidc_id_token"] = token.get("id_token", "")
    try:
        return directory.user_for_identity(identity)
    except directory.DirectoryRefused as exc:
        raise SignInFailed(str(exc)) from exc


def _identity(claims: dict[str, Any], token: dict[str, Any]) -> directory.Identity:
    conf = config()
    groups_claim = conf["groups_claim"]
    if groups_claim not in claims or conf["username_claim"] not in claims:
        # Many providers put groups (and sometimes names) only in the userinfo answer.
        info = client().userinfo(token=token)
        if info.get("sub") != claims["sub"]:
            raise ValueError("userinfo is about another subject than the ID token")
        claims = {**info, **claims}
    groups = claims.get(groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    username = str(claims.get(conf["username_claim"]) or claims.get("email") or "")
    return directory.Identity(
        kind=DirectoryAccount.OIDC,
        server=conf["issuer"],
        external_id=str(claims["sub"]),
        username=username,
        groups=[str(g) for g in groups],
        email=str(claims.get("email") or ""),
        first_name=str(claims.get("given_name") or ""),
        last_name=str(claims.get("family_name") or ""),
        refresh_token=str(token.get("refresh_token") or ""),
    )


def recheck(account: DirectoryAccount) -> directory.Identity | None:
    """Asks the provider whether the account is still enabled (see the module's docstring).
    None: it is not. Raises DirectoryUnreachable when the provider cannot be asked."""
    if not configured() or config()["issuer"] != account.server:
        return None
    if not account.refresh_token:
        # Not a "no" from the provider: the tokens wait for the next browser sign-in.
        raise directory.DirectoryUnreachable("no refresh token to ask the provider with")
    oauth = client()
    try:
        found = metadata()
        with oauth._get_oauth_client(**found) as session:
            token = session.refresh_token(
                found["token_endpoint"], refresh_token=account.refresh_token
            )
        claims = dict(oauth.userinfo(token=token))
        if token.get("id_token"):
            # Some providers (Entra ID) put groups only in ID tokens: a refreshed one is
            # checked like the first (no nonce: none is sent with a refresh).
            claims.update(oauth.parse_id_token(token, nonce=None, claims_options=_checks()))
    except requests.RequestException as exc:
        raise directory.DirectoryUnreachable(str(exc)) from exc
    except (OAuthError, JoseError) as exc:
        logger.info("OIDC refresh for %s refused: %r", account.user, exc)
        return None
    if str(claims.get("sub")) != account.external_id:
        return None
    if config()["groups_claim"] not in claims:
        # The provider does not say which groups now: the last sign-in's word stands.
        claims[config()["groups_claim"]] = list(account.groups)
    return _identity(claims, token)


def _checks() -> dict[str, Any]:
    return {
        "iss": {"essential": True, "values": [config()["issuer"]]},
        "aud": {"essential": True, "values": [config()["client_id"]]},
    }


def logout_url(request: Any, id_token: str, after: str) -> str | None:
    """Where to send the browser so the person is signed out at the provider too."""
    if not configured() or not config()["logout_at_provider"]:
        return None
    try:
        found = metadata()
    except (requests.RequestException, directory.DirectoryRefused):
        return None
    if not found.get("end_session_endpoint"):
        return None
    return client().create_logout_url(
        post_logout_redirect_uri=request.build_absolute_uri(after),
        id_token_hint=id_token or None,
        client_id=config()["client_id"],
    )["url"]
