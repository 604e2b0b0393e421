"""Access tokens the OAuth server issues, and the check of one presented to the API.

They are our own EdDSA JWTs (app/auth/tokens.py: same key ring, issuer, audience, lifetime),
with three more claims: ``client_id``, ``scope`` and ``grant``. ``sub`` is the user for an
authorization-code grant, the client itself for client credentials (RFC 9068 2.2; client ids are
UUIDs like user ids, and ``grant`` says which it is). ``sid``: the user grant's session
(``auth_sessions``: log out and revocation work as for a login), or the client id for client
credentials (no user, no session: the client row's ``tokens_valid_after`` revokes them).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from flask_jwt_extended import create_access_token
from sqlalchemy import bindparam, select

from app.auth.errors import InvalidToken
from app.auth.principal import Principal, PrincipalKind, Scope
from app.auth.tokens import IssuedToken, revocations
from app.db import db
from app.db.shards import outside_transaction
from app.oauth.models import OAuthClientRow
from app.tasks.models import utc_now

USER_GRANT = "authorization_code"  # refreshes keep it: the grant, not the last request
CLIENT_GRANT = "client_credentials"
CLAIMS = ("client_id", "scope", "grant")


def issue_oauth_access_token(
    *, client_id: uuid.UUID, user_id: uuid.UUID | None, scope: str, session_id: str
) -> IssuedToken:
    grant = USER_GRANT if user_id is not None else CLIENT_GRANT
    jti = str(uuid.uuid4())
    token = create_access_token(
        identity=str(user_id or client_id),
        additional_claims={
            "sid": session_id,
            "jti": jti,
            "client_id": str(client_id),
            "scope": scope,
            "grant": grant,
        },
    )
    return IssuedToken(token, jti, utc_now() + current_app.config["JWT_ACCESS_TOKEN_EXPIRES"])


def is_oauth_token(claims: dict[str, Any]) -> bool:
    return "client_id" in claims


_CLIENT_STATE = select(
    OAuthClientRow.workspace_id, OAuthClientRow.revoked_at, OAuthClientRow.tokens_valid_after
).where(OAuthClientRow.client_id == bindparam("client_id"))


def oauth_principal(claims: dict[str, Any]) -> Principal:
    """The caller an OAuth access token names (claims verified by ``decode``), or 401: its
    client revoked, its session ended, or (client credentials) revoked by RFC 7009."""
    try:
        client_id = uuid.UUID(str(claims["client_id"]))
        scopes = frozenset(Scope(s) for s in str(claims["scope"]).split())
        grant = claims["grant"]
    except (KeyError, ValueError):
        raise InvalidToken("The token is malformed.") from None
    if not scopes or grant not in (USER_GRANT, CLIENT_GRANT):
        raise InvalidToken("The token is malformed.")
    client = (
        outside_transaction(db.session())
        .execute(_CLIENT_STATE, {"client_id": client_id})
        .one_or_none()
    )
    if client is None or client.revoked_at is not None:
        raise InvalidToken("The token's OAuth client has been revoked.")
    if grant == CLIENT_GRANT:
        if claims["user_id"] != client_id:
            raise InvalidToken("The token is malformed.")
        issued = datetime.fromtimestamp(int(claims["iat"]), UTC)
        if client.tokens_valid_after is not None and issued < client.tokens_valid_after:
            raise InvalidToken("The token has been revoked.")
        return Principal(
            kind=PrincipalKind.CLIENT,
            user_id=None,
            subject=f"client:{client_id}",
            scopes=scopes,
            workspace_id=client.workspace_id,
            token_id=claims.get("jti"),
        )
    if revocations().is_revoked(claims["sid"]):
        raise InvalidToken("The token has been revoked.")
    return Principal(
        kind=PrincipalKind.USER,
        user_id=claims["user_id"],
        subject=f"user:{claims['user_id']}",
        scopes=scopes,
        workspace_id=client.workspace_id,
        session_id=claims["sid"],
        token_id=claims.get("jti"),
    )
