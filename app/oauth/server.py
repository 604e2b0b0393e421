"""The OAuth 2 authorization server (Authlib): ``/oauth/authorize`` (a plain HTML sign-in and
consent page), ``/oauth/token``, ``/oauth/revoke`` (RFC 7009), ``/oauth/introspect`` (RFC 7662)
and ``/.well-known/oauth-authorization-server`` (RFC 8414).

Grants: authorization code with PKCE (S256, required of every client, public or confidential;
``plain`` refused), refresh (rotated: single use; a reuse ends the grant), client credentials.
Codes are single use, live CODE_TTL seconds, and are bound to the client, the exact registered
redirect URI and the PKCE challenge. The access tokens are our own EdDSA JWTs
(app/oauth/tokens.py), so the API checks them like any access token.

A user grant lives in an ``auth_sessions`` row: the sign-in on the consent page starts it (with
AccountService's own log-in: throttling, audit, second factor), its tokens carry its id, and
revoking any of its tokens, logging out everywhere or revoking the client ends it.

These are protocol endpoints, not REST resources: their errors are RFC 6749 JSON
(``{"error": ...}``) as OAuth clients expect, not problem+json, and they are not in the OpenAPI
document (the RFC 8414 metadata document describes them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Blueprint, Flask, Response, current_app, render_template_string, request
from flask.views import MethodView
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.auth.authentication import public
from app.auth.errors import InvalidCredentials, InvalidToken
from app.auth.login_throttle import login_throttle
from app.auth.mfa import derive_key
from app.auth.models import AuthSessionRow, MembershipRow
from app.auth.principal import Principal, PrincipalKind, Scope
from app.auth.second_factor import SecondFactorService
from app.auth.service import AccountService
from app.auth.tokens import ACCESS, decode, revocations
from app.core.errors import ApiProblem
from app.core.rate_limits import auth_rate_limit
from app.db import db
from app.oauth.models import OAuthAuthorizationCodeRow, OAuthClientRow, OAuthRefreshTokenRow
from app.oauth.service import AUTH_METHODS, GRANT_TYPES, PUBLIC
from app.oauth.tokens import CLIENT_GRANT, is_oauth_token, issue_oauth_access_token
from app.tasks.models import utc_now

CODE_TTL = 60  # seconds an authorization code lives
CONSENT_FORM_TTL = 600  # seconds a consent form may be submitted after it was shown
MAX_FIELD = 2048  # any one form or query value
CONFIDENTIAL_METHODS = ["client_secret_basic", "client_secret_post"]
ALL_METHODS = [*CONFIDENTIAL_METHODS, PUBLIC]
_SERVER_EXTENSION = "oauth_server"
_FORM_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _session() -> Session:
    session = db.session()
    if session.in_transaction():
        session.rollback()
    return session


def _write_transaction(session: Session) -> Any:
    transaction = session.begin()
    session.connection(execution_options={"write_transaction": True})  # SQLite: IMMEDIATE
    return transaction


# --- Authlib's view of our rows -----------------------------------------------------------------


class Client(ClientMixin):
    """A live (not revoked) registered client."""

    def __init__(self, row: OAuthClientRow) -> None:
        self.row = row
        self.client_id = row.client_id
        self.workspace_id = row.workspace_id
        self.scopes = frozenset(row.scope.split())
        self.redirect_uris = tuple(row.redirect_uris.split())
        self.grant_types = frozenset(row.grant_types.split())

    def get_client_id(self) -> str:
        return str(self.client_id)

    def get_default_redirect_uri(self) -> str | None:
        return None  # every authorization request names its redirect_uri

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scope (default: all the client may have); None (invalid_scope) when it
        asks for more than it was registered with: no silent narrowing."""
        requested = set(scope.split()) if scope else set(self.scopes)
        if not requested or not requested <= self.scopes:
            return None
        if Scope.WRITE in requested:
            requested.add(Scope.READ)
        return " ".join(s.value for s in Scope if s.value in requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact string match (RFC 9700 4.1.3)

    def check_client_secret(self, client_secret: str) -> bool:
        expected = self.row.secret_hash or _hash(secrets.token_hex(16))
        return bool(self.row.secret_hash) and hmac.compare_digest(
            _hash(client_secret[:MAX_FIELD]), expected
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """The registered method at the token endpoint; revocation and introspection take
        either secret method from a confidential client (clients differ in what they send)."""
        registered = self.row.token_endpoint_auth_method
        if endpoint == "token" or registered == PUBLIC:
            return method == registered
        return method in CONFIDENTIAL_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


def query_client(client_id: Any) -> Client | None:
    try:
        key = uuid.UUID(str(client_id)[:64])
    except ValueError:
        return None
    row = _session().get(OAuthClientRow, key)
    if row is None or row.revoked_at is not None:
        return None
    return Client(row)


@dataclass(frozen=True)
class GrantUser:
    """The user a grant acts for, and the session (``auth_sessions``) it lives in."""

    id: uuid.UUID
    session_id: str


@dataclass(frozen=True)
class AuthorizationCode(AuthorizationCodeMixin):
    client_id: uuid.UUID
    user: GrantUser
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True)
class PresentedToken:
    """A token sent to /oauth/revoke or /oauth/introspect: a refresh token (by its hash) or one
    of our access tokens (verified)."""

    kind: str  # "refresh_token" or "access_token"
    client_id: uuid.UUID
    user_id: uuid.UUID | None
    session_id: str
    scope: str
    issued_at: int
    expires_at: int
    revoked: bool

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at <= int(time.time())

    def is_revoked(self) -> bool:
        return self.revoked


# --- Issuing tokens -----------------------------------------------------------------------------


def issue_tokens(
    client: Client,
    user: GrantUser | None,
    scope: str | None,
    *,
    include_refresh_token: bool,
    replaces: str | None = None,
) -> dict[str, Any]:
    """The token response: an access token and, for a user grant whose client may refresh, a
    new refresh token (recorded, single use). ``replaces``: the refresh token's hash it rotates."""
    allowed = client.get_allowed_scope(scope)
    if allowed is None:
        raise InvalidScopeError()
    ttl = int(current_app.config["ACCESS_TOKEN_TTL"])
    if user is None:
        access = issue_oauth_access_token(
            client_id=client.client_id,
            user_id=None,
            scope=allowed,
            session_id=str(client.client_id),
        )
        return {"token_type": "Bearer", "access_token": access.token, "expires_in": ttl,
                "scope": allowed}  # fmt: skip
    response: dict[str, Any] = {}
    now = utc_now()
    session = _session()
    with _write_transaction(session):
        grant_session = session.get(AuthSessionRow, user.session_id, with_for_update=True)
        if grant_session is None or grant_session.revoked_at is not None:
            raise InvalidGrantError("The grant has been revoked.")
        if include_refresh_token:
            refresh = secrets.token_urlsafe(32)
            expires = now + timedelta(seconds=int(current_app.config["REFRESH_TOKEN_TTL"]))
            session.add(
                OAuthRefreshTokenRow(
                    token_hash=_hash(refresh),
                    client_id=client.client_id,
                    user_id=user.id,
                    workspace_id=client.workspace_id,
                    session_id=user.session_id,
                    scope=allowed,
                    issued_at=now,
                    expires_at=expires,
                )
            )
            if replaces is not None:
                session.execute(
                    update(OAuthRefreshTokenRow)
                    .where(OAuthRefreshTokenRow.token_hash == replaces)
                    .values(replaced_by=_hash(refresh))
                )
            grant_session.expires_at = max(grant_session.expires_at, expires)
            response["refresh_token"] = refresh
    access = issue_oauth_access_token(
        client_id=client.client_id, user_id=user.id, scope=allowed, session_id=user.session_id
    )
    return {"token_type": "Bearer", "access_token": access.token, "expires_in": ttl,
            "scope": allowed, **response}  # fmt: skip


def end_session(session_id: str, reason: str) -> None:
    """Revoke a grant's session and its refresh tokens (its access tokens die with it)."""
    now = utc_now()
    session = _session()
    with _write_transaction(session):
        session.execute(
            update(AuthSessionRow)
            .where(AuthSessionRow.id == session_id, AuthSessionRow.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        session.execute(
            update(OAuthRefreshTokenRow)
            .where(
                OAuthRefreshTokenRow.session_id == session_id,
                OAuthRefreshTokenRow.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
    revocations().revoked([session_id])


# --- Grants -------------------------------------------------------------------------------------


class S256Required(CodeChallenge):
    """PKCE on every authorization request, S256 only: ``plain`` (or no method, which means
    plain) is refused, so an intercepted challenge never reveals the verifier."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - Authlib's class attribute
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS  # noqa: RUF012

    def save_authorization_code(self, code: str, request: Any) -> None:
        user: GrantUser = request.user
        session = _session()
        with _write_transaction(session):
            session.add(
                OAuthAuthorizationCodeRow(
                    code_hash=_hash(code),
                    client_id=request.client.client_id,
                    user_id=user.id,
                    session_id=user.session_id,
                    redirect_uri=request.payload.redirect_uri,
                    scope=request.scope,
                    code_challenge=request.payload.data["code_challenge"],
                    code_challenge_method="S256",
                    expires_at=utc_now() + timedelta(seconds=CODE_TTL),
                )
            )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """Claim the code (single use, atomically): a second exchange, even a concurrent one,
        finds it used; a used code presented again revokes what it issued (RFC 6749 4.1.2)."""
        if len(code) > MAX_FIELD:
            return None
        code_hash, now = _hash(code), utc_now()
        session = _session()
        with _write_transaction(session):
            claimed = session.execute(
                update(OAuthAuthorizationCodeRow)
                .where(
                    OAuthAuthorizationCodeRow.code_hash == code_hash,
                    OAuthAuthorizationCodeRow.client_id == client.client_id,
                    OAuthAuthorizationCodeRow.used_at.is_(None),
                    OAuthAuthorizationCodeRow.expires_at > now,
                )
                .values(used_at=now)
            ).rowcount
            row = session.get(OAuthAuthorizationCodeRow, code_hash)
            reused = not claimed and row is not None and row.used_at is not None
            found = (
                AuthorizationCode(
                    client_id=row.client_id,
                    user=GrantUser(row.user_id, row.session_id),
                    redirect_uri=row.redirect_uri,
                    scope=row.scope,
                    code_challenge=row.code_challenge,
                    code_challenge_method=row.code_challenge_method,
                )
                if claimed and row is not None
                else None
            )
            reused_session = row.session_id if reused and row is not None else None
        if reused_session is not None:
            end_session(reused_session, "oauth_code_reused")
        return found

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing to do: the code was marked used when it was claimed."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> GrantUser:
        return authorization_code.user

    def generate_token(
        self, user: Any = None, scope: str | None = None, **_: Any
    ) -> dict[str, Any]:
        refreshable = self.request.client.check_grant_type("refresh_token")
        return issue_tokens(self.request.client, user, scope, include_refresh_token=refreshable)


@dataclass(frozen=True)
class StoredRefreshToken:
    token_hash: str
    client_id: uuid.UUID
    user: GrantUser
    scope: str

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_METHODS  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh token is single use

    def authenticate_refresh_token(self, refresh_token: str) -> StoredRefreshToken | None:
        """Claim the token atomically; a used one presented again ends the grant (RFC 9700
        4.14.2: one of two holders is not the client)."""
        if len(refresh_token) > MAX_FIELD:
            return None
        token_hash, now = _hash(refresh_token), utc_now()
        client: Client = self.request.client
        session = _session()
        with _write_transaction(session):
            claimed = session.execute(
                update(OAuthRefreshTokenRow)
                .where(
                    OAuthRefreshTokenRow.token_hash == token_hash,
                    OAuthRefreshTokenRow.client_id == client.client_id,
                    OAuthRefreshTokenRow.used_at.is_(None),
                    OAuthRefreshTokenRow.revoked_at.is_(None),
                    OAuthRefreshTokenRow.expires_at > now,
                )
                .values(used_at=now)
            ).rowcount
            row = session.get(OAuthRefreshTokenRow, token_hash)
            if row is None or row.client_id != client.client_id or row.user_id is None:
                return None
            stored = StoredRefreshToken(
                row.token_hash, row.client_id, GrantUser(row.user_id, row.session_id), row.scope
            )
            reused = not claimed and row.used_at is not None
        if reused:
            end_session(stored.user.session_id, "oauth_refresh_reused")
        return stored if claimed else None

    def authenticate_user(self, refresh_token: StoredRefreshToken) -> GrantUser:
        return refresh_token.user

    def issue_token(self, user: GrantUser, refresh_token: StoredRefreshToken) -> dict[str, Any]:
        scope = self.request.payload.scope or refresh_token.get_scope()
        return issue_tokens(
            self.request.client,
            user,
            scope,
            include_refresh_token=True,
            replaces=refresh_token.token_hash,
        )

    def revoke_old_credential(self, refresh_token: StoredRefreshToken) -> None:
        """Nothing to do: it was marked used when claimed, and names its successor."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_METHODS  # noqa: RUF012

    def generate_token(
        self, user: Any = None, scope: str | None = None, **_: Any
    ) -> dict[str, Any]:
        return issue_tokens(self.request.client, None, scope, include_refresh_token=False)


# --- Revocation and introspection ----------------------------------------------------------------


def find_token(token: str, hint: str | None) -> PresentedToken | None:
    """A refresh token of ours (by hash) or an OAuth access token (verified), else None."""
    if len(token) > MAX_FIELD:
        return None
    if hint != "access_token":
        row = _session().get(OAuthRefreshTokenRow, _hash(token))
        if row is not None and row.user_id is not None:
            return PresentedToken(
                kind="refresh_token",
                client_id=row.client_id,
                user_id=row.user_id,
                session_id=row.session_id,
                scope=row.scope,
                issued_at=int(row.issued_at.timestamp()),
                expires_at=int(row.expires_at.timestamp()),
                revoked=row.revoked_at is not None or row.used_at is not None,
            )
    try:
        claims = decode(token, ACCESS)
    except InvalidToken:
        return None
    if not is_oauth_token(claims):
        return None
    try:
        client_id = uuid.UUID(str(claims["client_id"]))
    except ValueError:
        return None
    client_grant = claims.get("grant") == CLIENT_GRANT
    return PresentedToken(
        kind="access_token",
        client_id=client_id,
        user_id=None if client_grant else claims["user_id"],
        session_id=claims["sid"],
        scope=str(claims.get("scope", "")),
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
        revoked=_access_token_revoked(claims, client_id, client_grant),
    )


def _access_token_revoked(claims: dict[str, Any], client_id: uuid.UUID, client_grant: bool) -> bool:
    row = _session().get(OAuthClientRow, client_id)
    if row is None or row.revoked_at is not None:
        return True
    if client_grant:
        after = row.tokens_valid_after
        return after is not None and int(claims["iat"]) < after.timestamp()
    return revocations().is_revoked(claims["sid"])


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ALL_METHODS  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: PresentedToken, request: Any) -> None:
        """A user grant's token ends the grant (its session: every token of it); a
        client-credentials token ends every token the client got that way so far."""
        if token.user_id is not None:
            end_session(token.session_id, "oauth_token_revoked")
            return
        session = _session()
        with _write_transaction(session):
            session.execute(
                update(OAuthClientRow)
                .where(OAuthClientRow.client_id == token.client_id)
                .values(tokens_valid_after=utc_now())
            )


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CONFIDENTIAL_METHODS  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: PresentedToken, client: Client, request: Any) -> bool:
        return token.client_id == client.client_id  # a client sees only its own tokens

    def introspect_token(self, token: PresentedToken) -> dict[str, Any]:
        subject = str(token.user_id) if token.user_id is not None else str(token.client_id)
        return {
            "active": True,
            "scope": token.scope,
            "client_id": str(token.client_id),
            "sub": subject,
            "exp": token.expires_at,
            "iat": token.issued_at,
            "token_type": "Bearer" if token.kind == "access_token" else "refresh_token",
        }


# --- The server and its endpoints ---------------------------------------------------------------


def _save_token(token: dict[str, Any], request: Any) -> None:
    """Nothing: issue_tokens records what needs recording as it makes the tokens."""


def make_server(app: Flask) -> AuthorizationServer:
    server = AuthorizationServer(query_client=query_client, save_token=_save_token)
    server.init_app(app)
    server.scopes_supported = [scope.value for scope in Scope]
    server.register_grant(AuthorizationCodeGrant, [S256Required(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    return server


def oauth_server() -> AuthorizationServer:
    return current_app.extensions[_SERVER_EXTENSION]


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def metadata() -> dict[str, Any]:
    issuer = request.url_root.rstrip("/")
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "scopes_supported": [scope.value for scope in Scope],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": CONFIDENTIAL_METHODS,
        "code_challenge_methods_supported": ["S256"],
    }


@public
class MetadataView(MethodView):
    def get(self) -> Response:
        response = current_app.json.response(metadata())
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response


@public
class TokenView(MethodView):
    decorators = [auth_rate_limit(scope="oauth")]  # RATE_LIMIT_AUTH_IP per client address

    def post(self) -> Response:
        return _no_store(oauth_server().create_token_response())


@public
class RevokeView(MethodView):
    decorators = [auth_rate_limit(scope="oauth")]  # RATE_LIMIT_AUTH_IP per client address

    def post(self) -> Response:
        return _no_store(oauth_server().create_endpoint_response(Revocation.ENDPOINT_NAME))


@public
class IntrospectView(MethodView):
    decorators = [auth_rate_limit(scope="oauth")]  # RATE_LIMIT_AUTH_IP per client address

    def post(self) -> Response:
        return _no_store(oauth_server().create_endpoint_response(Introspection.ENDPOINT_NAME))


# --- The sign-in and consent page -----------------------------------------------------------------

PAGE_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem}"
    ".error{color:#a00}button{margin:1rem .5rem 0 0;padding:.5rem 1rem}"
)
_STYLE_HASH = f"'sha256-{base64.b64encode(hashlib.sha256(PAGE_STYLE.encode()).digest()).decode()}'"
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ style }}</style></head>
<body>
<h1>{{ title }}</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if client %}
<p><strong>{{ client.row.name }}</strong> asks to act in your workspace with these rights:</p>
<ul>{% for scope in scopes %}<li>{{ scope_text[scope] }}</li>{% endfor %}</ul>
<p>It will be sent back to <code>{{ redirect_uri }}</code>.</p>
<form method="post" action="{{ action }}">
{% for name, value in params %}<input type="hidden" name="{{ name }}" value="{{ value }}">
{% endfor %}<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<label for="email">Email</label>
<input id="email" name="email" type="email" autocomplete="username" required value="{{ email }}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<label for="code">One-time code (only if your account has two-factor authentication)</label>
<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="10">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>
</form>
{% endif %}
</body></html>
"""
SCOPE_TEXT = {
    "read": "Read the workspace and its tasks",
    "write": "Create, change and delete tasks",
}


def page_policy(redirect_uri: str | None) -> str:
    """No script at all; the inline style by hash; forms post here only, and (Chrome applies
    form-action to the redirect that follows a POST) to the client's redirect URI's origin."""
    targets = "'self'"
    if redirect_uri:
        parts = urlsplit(redirect_uri)
        targets += f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'none'; style-src {_STYLE_HASH}; form-action {targets}; "
        "base-uri 'none'; frame-ancestors 'none'"
    )


def _page(status: int, *, error: str = "", grant: Any = None, title: str = "") -> Response:
    client = grant.request.client if grant is not None else None
    redirect_uri = grant.redirect_uri if grant is not None else None
    params = [(name, _field(name)) for name in _FORM_PARAMETERS if _field(name)]
    html = render_template_string(  # autoescaped: a string template is HTML to Flask
        _PAGE,
        title=title or ("Sign in and authorize" if client else "Authorization failed"),
        style=PAGE_STYLE,
        error=error,
        client=client,
        scopes=(grant.request.scope or "").split() if grant is not None else [],
        scope_text=SCOPE_TEXT,
        redirect_uri=redirect_uri,
        action=request.path,
        params=params,
        csrf_token=consent_token(params) if client else "",
        email=_field("email") if request.method == "POST" else "",
    )
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = page_policy(redirect_uri)
    response.headers["Referrer-Policy"] = "same-origin"
    return _no_store(response)


def _field(name: str) -> str:
    value = request.values.get(name, "")
    return value[:MAX_FIELD] if isinstance(value, str) else ""


def _consent_key() -> bytes:
    return derive_key(current_app.config["SECRET_KEY"], "oauth-consent-form")


def consent_token(params: list[tuple[str, str]], *, issued: int | None = None) -> str:
    """Binds the form to the very authorization request it shows, and to when it was shown: a
    page elsewhere cannot make one (no key), and a token is no good for another request."""
    issued = int(time.time()) if issued is None else issued
    message = "\n".join([str(issued), *(f"{name}={value}" for name, value in params)])
    mac = hmac.new(_consent_key(), message.encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{mac}"


def consent_token_valid(token: str, params: list[tuple[str, str]]) -> bool:
    issued_text, _, _mac = token.partition(".")
    if not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    if not 0 <= time.time() - issued <= CONSENT_FORM_TTL:
        return False
    return hmac.compare_digest(consent_token(params, issued=issued), token)


def _same_origin() -> bool:
    """Browsers send Origin on a form POST (the page's Referrer-Policy keeps it real, not
    "null"); when present it must be ours."""
    origin = request.headers.get("Origin")
    return origin is None or origin == request.host_url.rstrip("/")


@public
class AuthorizeView(MethodView):
    def get(self) -> Response:
        try:
            grant = oauth_server().get_consent_grant(end_user=None)
        except OAuth2Error as error:
            return self._refuse(error)
        return _page(200, grant=grant)

    @auth_rate_limit(scope="oauth")  # the sign-in form: RATE_LIMIT_AUTH_IP per address
    def post(self) -> Response:
        server = oauth_server()
        try:
            grant = server.get_consent_grant(end_user=None)
        except OAuth2Error as error:
            return self._refuse(error)
        params = [(name, _field(name)) for name in _FORM_PARAMETERS if _field(name)]
        if not _same_origin() or not consent_token_valid(_field("csrf_token"), params):
            return _page(403, grant=grant, error="This form has expired. Please try again.")
        if request.form.get("decision") != "allow":
            return _no_store(server.create_authorization_response(grant=grant, grant_user=None))
        try:
            user = self._sign_in(grant.request.client)
        except InvalidCredentials as failure:
            return _page(401, grant=grant, error=failure.detail or "Wrong email or password.")
        except ApiProblem as problem:  # 429: backing off after failed sign-ins
            refused = _page(problem.status, grant=grant, error=problem.detail)
            refused.headers.extend(problem.headers)
            return refused
        if user is None:
            return _page(401, grant=grant, error="Enter the one-time code from your app.")
        return _no_store(server.create_authorization_response(grant=grant, grant_user=user))

    def _sign_in(self, client: Client) -> GrantUser | None:
        """A log-in exactly as POST /auth/login (+ /login/mfa) does one; its session becomes
        the grant's. None: the password was right, the second factor is still to come."""
        accounts = AccountService(db.session(), current_app.config, throttle=login_throttle())
        result = accounts.login(
            _field("email"), request.form.get("password", "")[:MAX_FIELD],
            client_ip=request.remote_addr or "",
        )  # fmt: skip
        if result.mfa_token is not None:
            code = _field("code").strip()
            if not code:
                return None
            result = SecondFactorService(accounts).login(result.mfa_token, code[:10], None)
        assert result.tokens is not None
        user_id, session_id = self._user_of(result), result.tokens.session_id
        member = _session().get(MembershipRow, (client.workspace_id, user_id))
        if member is None:  # the token could do nothing there: say so now, not with 404s later
            accounts.logout(
                Principal(PrincipalKind.USER, user_id, f"user:{user_id}", session_id=session_id)
            )
            raise InvalidCredentials("This account is not a member of the app's workspace.")
        return GrantUser(user_id, session_id)

    @staticmethod
    def _user_of(result: Any) -> uuid.UUID:
        return decode(result.tokens.access.token, ACCESS)["user_id"]

    @staticmethod
    def _refuse(error: OAuth2Error) -> Response:
        """Back to the client when its redirect URI is verified (RFC 6749 4.1.2.1); otherwise
        a page here: never redirect to a URI nobody registered."""
        if error.redirect_uri:
            return _no_store(oauth_server().handle_error_response(None, error))
        return _page(400, error=error.get_error_description() or error.error)


def init_oauth_server(app: Flask) -> None:
    """The authorization server and its endpoints on ``app``."""
    # Authlib logs every issued token (refresh tokens included) at DEBUG: never let it.
    logging.getLogger("authlib").setLevel(max(logging.INFO, logging.getLogger().level))
    app.extensions[_SERVER_EXTENSION] = make_server(app)
    blueprint = Blueprint("oauth", __name__)
    blueprint.add_url_rule("/oauth/authorize", view_func=AuthorizeView.as_view("authorize"))
    blueprint.add_url_rule("/oauth/token", view_func=TokenView.as_view("token"))
    blueprint.add_url_rule("/oauth/revoke", view_func=RevokeView.as_view("revoke"))
    blueprint.add_url_rule("/oauth/introspect", view_func=IntrospectView.as_view("introspect"))
    blueprint.add_url_rule(
        "/.well-known/oauth-authorization-server", view_func=MetadataView.as_view("metadata")
    )
    app.register_blueprint(blueprint)
