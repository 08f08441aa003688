"""A real OpenID Connect provider for the sign-in tests, built on Authlib's server side.

It serves, on 127.0.0.1 and a free port, what Keycloak, Entra ID or Authentik serve to the
appliance: the discovery document, the JWKS, the authorisation endpoint (a login form of
its own), the token endpoint (authorisation code with PKCE S256 required, nonce required,
refresh tokens), userinfo and RP-initiated logout. Authlib does the protocol; this file
only keeps clients, codes and tokens in memory and knows the test people.

``misbehave`` makes the provider issue bad ID tokens on purpose, as a broken or hostile
provider (or someone in between) might: expired, signed with a key not in the JWKS, for
another audience, or carrying the nonce of an earlier sign-in. The appliance must refuse
each one.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin, ClientMixin, TokenMixin
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo, UserInfoEndpoint
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask, request, session
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

from tests.support.stack import free_port

KID = "test-key-1"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class Person:
    username: str
    password: str
    groups: list[str]
    sub: str = field(default_factory=lambda: secrets.token_hex(8))
    given_name: str = ""
    family_name: str = ""
    disabled: bool = False


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str] = field(default_factory=list)

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"post_logout_redirect_uris": self.post_logout_redirect_uris}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = {"openid", "email", "profile", "offline_access", "groups"}
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: Person
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token(TokenMixin):
    client: Client
    user: Person
    scope: str
    access_token: str
    refresh_token: str | None
    issued_at: int
    expires_in: int
    revoked: bool = False

    def check_client(self, client: Any) -> bool:
        return client.client_id == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() > self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> Person:
        return self.user

    def get_client(self) -> Client:
        return self.client


class Provider:
    """One provider: ``start()``, ``issuer``, ``add_person``, ``add_client``, ``misbehave``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig"})
        # Same key id, different key: what a forger would sign with.
        self.forger_key = RSAKey.generate_key(2048, parameters={"kid": KID, "use": "sig"})
        self.people: dict[str, Person] = {}
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, Token] = {}
        self.used_nonces: list[str] = []
        self.mode = "normal"  # see misbehave()
        # False: groups only in ID tokens, not from userinfo (as Entra ID does).
        self.userinfo_groups = True
        self.ended_sessions = 0
        self.app = self._build_app()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # --- what tests use ------------------------------------------------------------------

    def add_person(self, username: str, password: str, groups: list[str], **names: str) -> Person:
        person = Person(username=username, password=password, groups=list(groups), **names)
        self.people[username] = person
        return person

    def add_client(
        self, client_id: str, secret: str, redirect_uris: list[str], logout_uris: list[str]
    ) -> Client:
        client = Client(client_id, secret, redirect_uris, logout_uris)
        self.clients[client_id] = client
        return client

    def misbehave(self, mode: str) -> None:
        """ "normal", "expired", "forged", "wrong_audience" or "stale_nonce"."""
        assert mode in ("normal", "expired", "forged", "wrong_audience", "stale_nonce")
        self.mode = mode

    def start(self) -> None:
        self._server = make_server(
            "127.0.0.1", self.port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def jwks(self) -> dict[str, Any]:
        return KeySet([self.key]).as_dict(private=False)

    # --- the provider ----------------------------------------------------------------------

    def _build_app(self) -> Flask:  # one closure per endpoint
        provider = self
        app = Flask("test-oidc-provider")
        app.secret_key = secrets.token_hex(16)
        app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True

        def query_client(client_id: str) -> Client | None:
            return provider.clients.get(client_id)

        def save_token(token: dict[str, Any], req: Any) -> None:
            provider.tokens[token["access_token"]] = Token(
                client=req.client,
                user=req.user,
                scope=token.get("scope", ""),
                access_token=token["access_token"],
                refresh_token=token.get("refresh_token"),
                issued_at=int(time.time()),
                expires_in=int(token.get("expires_in", 3600)),
            )

        server = AuthorizationServer(app, query_client=query_client, save_token=save_token)

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                provider.codes[code] = Code(
                    code=code,
                    client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri,
                    scope=req.payload.scope,
                    user=req.user,
                    nonce=req.payload.data.get("nonce"),
                    code_challenge=req.payload.data.get("code_challenge"),
                    code_challenge_method=req.payload.data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code: str, client: Any) -> Code | None:
                found = provider.codes.get(code)
                if found and found.client_id == client.client_id:
                    return found
                return None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> Person | None:
                person = authorization_code.user
                return None if person.disabled else person

        class RefreshGrant(grants.RefreshTokenGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]
            INCLUDE_NEW_REFRESH_TOKEN = True

            def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
                for token in provider.tokens.values():
                    if token.refresh_token == refresh_token and not token.revoked:
                        return token
                return None

            def authenticate_user(self, credential: Token) -> Person | None:
                person = credential.user
                return None if person.disabled else person

            def revoke_old_credential(self, credential: Token) -> None:
                credential.revoked = True

        class OpenID(OpenIDCode):
            def exists_nonce(self, nonce: str, req: Any) -> bool:
                return nonce in provider.used_nonces

            def resolve_client_private_key(self, client: Any) -> Any:
                return provider.forger_key if provider.mode == "forged" else provider.key

            def get_client_claims(self, client: Any) -> dict[str, Any]:
                claims: dict[str, Any] = {"iss": provider.issuer, "aud": [client.client_id]}
                if provider.mode == "wrong_audience":
                    # Issued to another relying party, naming this client only as the
                    # authorised party: the audience check itself must refuse it.
                    claims["aud"] = ["someone-else"]
                    claims["azp"] = client.client_id
                if provider.mode == "expired":
                    claims["iat"] = int(time.time()) - 7200
                    claims["exp"] = int(time.time()) - 3600
                return claims

            def get_encode_header(self, client: Any) -> dict[str, Any]:
                return {"alg": "RS256", "kid": KID}

            def get_authorization_code_claims(self, authorization_code: Code) -> dict[str, Any]:
                claims = super().get_authorization_code_claims(authorization_code)
                if provider.mode == "stale_nonce" and provider.used_nonces[:-1]:
                    claims["nonce"] = provider.used_nonces[-2]
                return claims

            def generate_user_info(self, user: Person, scope: str) -> UserInfo:
                return _user_info(user)

        def _user_info(user: Person) -> UserInfo:
            return UserInfo(
                sub=user.sub,
                preferred_username=user.username,
                email=f"{user.username}@example.org",
                given_name=user.given_name,
                family_name=user.family_name,
                groups=list(user.groups),
            )

        server.register_grant(CodeGrant, [OpenID(require_nonce=True), CodeChallenge(required=True)])
        # A refresh answers with a new ID token too, as Entra ID and Keycloak do.
        server.register_grant(RefreshGrant, [OpenID()])

        class Validator(BearerTokenValidator):
            def authenticate_token(self, token_string: str) -> Token | None:
                return provider.tokens.get(token_string)

        protector = ResourceProtector()
        protector.register_token_validator(Validator())

        class UserInfoAnswer(UserInfoEndpoint):
            def get_issuer(self) -> str:
                return provider.issuer

            def generate_user_info(self, user: Person, scope: str) -> UserInfo:
                info = _user_info(user)
                if not provider.userinfo_groups:
                    del info["groups"]
                return info

        server.register_endpoint(UserInfoAnswer(resource_protector=protector))

        class EndSession(EndSessionEndpoint):
            def get_server_jwks(self) -> dict[str, Any]:
                return provider.jwks()

            def end_session(self, end_session_request: Any) -> None:
                session.clear()
                provider.ended_sessions += 1

        server.register_endpoint(EndSession)

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            base = provider.issuer
            return {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "userinfo_endpoint": f"{base}/userinfo",
                "jwks_uri": f"{base}/jwks",
                "end_session_endpoint": f"{base}/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile", "offline_access", "groups"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "claims_supported": ["sub", "preferred_username", "email", "groups"],
            }

        @app.get("/jwks")
        def jwks() -> Any:
            return provider.jwks()

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            person = provider.people.get(session.get("user", ""))
            error = ""
            if request.method == "POST":
                candidate = provider.people.get(request.form.get("username", ""))
                if (
                    candidate is not None
                    and not candidate.disabled
                    and secrets.compare_digest(candidate.password, request.form.get("password", ""))
                ):
                    person = candidate
                    session["user"] = person.username
                else:
                    error = "<p id='error'>Invalid username or password.</p>"
            if person is not None and not person.disabled:
                answer = server.create_authorization_response(grant_user=person)
                if request.args.get("nonce"):
                    provider.used_nonces.append(request.args["nonce"])
                return answer
            query = urlencode(request.args)
            return (
                "<!doctype html><title>Test provider</title><h1>Test identity provider</h1>"
                f"{error}<form method='post' action='/authorize?{query}'>"
                "<label>Username <input name='username' id='username'></label>"
                "<label>Password <input name='password' id='password' type='password'></label>"
                "<button type='submit' id='kc-login'>Sign in</button></form>"
            )

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo() -> Any:
            return server.create_endpoint_response("userinfo")

        @app.route("/logout", methods=["GET", "POST"])
        def logout() -> Any:
            return server.create_endpoint_response("end_session") or (
                "<!doctype html><title>Signed out</title><p id='signed-out'>Signed out.</p>"
            )

        return app
