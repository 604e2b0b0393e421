"""OAuth client registration, free of HTTP: workspace owners and admins register the apps that
may act in their workspace (app/oauth/server.py is the authorization server itself).

A client's secret (confidential clients) is 256 random bits, shown once and stored as its
SHA-256: fast is right for random secrets (see app/api_keys/service.py). Revoking a client ends
every session its grants started, so its tokens stop working at once.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.audit.service import record_event
from app.auth.models import AuthSessionRow
from app.auth.permissions import Action
from app.auth.principal import Scope
from app.auth.tokens import revocations
from app.core.errors import ApiProblem, ProblemType, ValidationProblem
from app.oauth.models import OAuthAuthorizationCodeRow, OAuthClientRow, OAuthRefreshTokenRow
from app.tasks.models import utc_now
from app.workspaces.models import WorkspaceRow
from app.workspaces.service import WorkspaceService

MAX_ACTIVE_CLIENTS = 50  # per workspace
MAX_REDIRECT_URIS = 10
MAX_REDIRECT_URI_LENGTH = 2000
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
PUBLIC = "none"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", PUBLIC)
_FIELDS = frozenset(
    {"name", "redirect_uris", "grant_types", "scopes", "token_endpoint_auth_method"}
)


class OAuthClientNotFound(ApiProblem):
    problem_type = ProblemType(
        slug="oauth-client-not-found",
        title="OAuth client not found",
        status=404,
        description="No OAuth client of this workspace has this id.",
    )

    def __init__(self) -> None:
        super().__init__("This workspace has no OAuth client with this id.")


class TooManyOAuthClients(ApiProblem):
    problem_type = ProblemType(
        slug="too-many-oauth-clients",
        title="Too many OAuth clients",
        status=409,
        description=f"A workspace may have {MAX_ACTIVE_CLIENTS} active OAuth clients; revoke "
        "unused ones.",
    )


@dataclass(frozen=True)
class OAuthClient:
    client_id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    token_endpoint_auth_method: str
    created_by: uuid.UUID | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class RegisteredClient:
    client: OAuthClient
    secret: str | None  # shown once; None for a public client


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def to_client(row: OAuthClientRow) -> OAuthClient:
    return OAuthClient(
        client_id=row.client_id,
        workspace_id=row.workspace_id,
        name=row.name,
        redirect_uris=tuple(row.redirect_uris.split()),
        grant_types=tuple(row.grant_types.split()),
        scopes=tuple(row.scope.split()),
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def redirect_uri_problem(uri: Any) -> str | None:
    """Why ``uri`` cannot be registered, or None: https, or http on a loopback host (native
    apps and development, RFC 8252 7.3); absolute, no fragment, no user info."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_REDIRECT_URI_LENGTH:
        return f"must be a URL of 1-{MAX_REDIRECT_URI_LENGTH} characters"
    if any(ord(ch) <= 32 or ord(ch) == 127 for ch in uri):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "is not a valid URL"
    if not parts.netloc or parts.fragment or "#" in uri or "@" in parts.netloc:
        return "must be absolute, without a fragment or user info"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and (parts.hostname or "") in {"127.0.0.1", "localhost", "::1"}:
        return None
    return "must use https (http only on 127.0.0.1 or localhost)"


def client_fields(document: Any) -> dict[str, Any]:
    """Validate a registration; one 422 lists every error."""
    if not isinstance(document, dict):
        raise ValidationProblem([{"pointer": "#", "detail": "must be an object"}])
    errors: list[dict[str, str]] = [
        {"pointer": f"#/{name[:64]}", "detail": "is not a known field"}
        for name in sorted(set(document) - _FIELDS)
    ]
    name = document.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        errors.append({"pointer": "#/name", "detail": "must be 1-100 characters"})
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        errors.append({"pointer": "#/name", "detail": "must not contain control characters"})
    method = document.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        errors.append(
            {"pointer": "#/token_endpoint_auth_method", "detail": f"must be one of {AUTH_METHODS}"}
        )
    grants = document.get("grant_types", ["authorization_code", "refresh_token"])
    if (
        not isinstance(grants, list)
        or not grants
        or len(grants) > len(GRANT_TYPES)
        or any(g not in GRANT_TYPES for g in grants)
    ):
        errors.append({"pointer": "#/grant_types", "detail": f"must be a list of {GRANT_TYPES}"})
        grants = []
    if "refresh_token" in grants and "authorization_code" not in grants:
        errors.append(
            {"pointer": "#/grant_types", "detail": "refresh_token needs authorization_code"}
        )
    if "client_credentials" in grants and method == PUBLIC:
        errors.append(
            {"pointer": "#/grant_types", "detail": "a public client cannot use client_credentials"}
        )
    uris = document.get("redirect_uris", [])
    if not isinstance(uris, list) or len(uris) > MAX_REDIRECT_URIS:
        errors.append(
            {"pointer": "#/redirect_uris", "detail": f"must be a list of 0-{MAX_REDIRECT_URIS}"}
        )
        uris = []
    for index, uri in enumerate(uris):
        problem = redirect_uri_problem(uri)
        if problem:
            errors.append({"pointer": f"#/redirect_uris/{index}", "detail": problem})
    if "authorization_code" in grants and not uris:
        errors.append(
            {"pointer": "#/redirect_uris", "detail": "authorization_code needs a redirect URI"}
        )
    scopes = document.get("scopes", ["read"])
    valid = {scope.value for scope in Scope}
    if (
        not isinstance(scopes, list)
        or not scopes
        or len(scopes) > len(valid)
        or any(not isinstance(s, str) or s not in valid for s in scopes)
    ):
        errors.append({"pointer": "#/scopes", "detail": 'must be ["read"] or ["read", "write"]'})
    elif "write" in scopes and "read" not in scopes:
        errors.append({"pointer": "#/scopes", "detail": "write needs read too"})
    if errors:
        raise ValidationProblem(errors)
    return {
        "name": name.strip(),
        "redirect_uris": list(dict.fromkeys(uris)),
        "grant_types": [g for g in GRANT_TYPES if g in grants],
        "scopes": [s.value for s in Scope if s.value in scopes],
        "token_endpoint_auth_method": method,
    }


class OAuthClientService:
    def __init__(self, session: Session, directory: WorkspaceService) -> None:
        self.session = session
        self.directory = directory

    def list(self, workspace_id: uuid.UUID) -> list[OAuthClient]:
        self.directory.access(workspace_id, Action.OAUTH_CLIENTS_MANAGE)
        rows = self.session.scalars(
            select(OAuthClientRow)
            .where(OAuthClientRow.workspace_id == workspace_id)
            .order_by(OAuthClientRow.created_at.desc(), OAuthClientRow.client_id)
            .limit(MAX_ACTIVE_CLIENTS * 10)
        )
        return [to_client(row) for row in rows]

    def get(self, workspace_id: uuid.UUID, client_id: uuid.UUID) -> OAuthClient:
        self.directory.access(workspace_id, Action.OAUTH_CLIENTS_MANAGE)
        row = self.session.get(OAuthClientRow, client_id)
        if row is None or row.workspace_id != workspace_id:
            raise OAuthClientNotFound()
        return to_client(row)

    def register(self, workspace_id: uuid.UUID, document: Any) -> RegisteredClient:
        self.directory.access(workspace_id, Action.OAUTH_CLIENTS_MANAGE)
        fields = client_fields(document)
        public = fields["token_endpoint_auth_method"] == PUBLIC
        secret = None if public else secrets.token_urlsafe(32)
        with self._write(workspace_id):
            active = self.session.scalar(
                select(func.count()).where(
                    OAuthClientRow.workspace_id == workspace_id,
                    OAuthClientRow.revoked_at.is_(None),
                )
            )
            if (active or 0) >= MAX_ACTIVE_CLIENTS:
                raise TooManyOAuthClients(f"This workspace has {active} active clients already.")
            row = OAuthClientRow(
                client_id=uuid.uuid4(),
                secret_hash=hash_secret(secret) if secret else None,
                workspace_id=workspace_id,
                name=fields["name"],
                redirect_uris="\n".join(fields["redirect_uris"]),
                grant_types=" ".join(fields["grant_types"]),
                scope=" ".join(fields["scopes"]),
                token_endpoint_auth_method=fields["token_endpoint_auth_method"],
                created_by=self.directory.principal.user_id,
                created_at=utc_now(),
            )
            self.session.add(row)
            self.session.flush()
            record_event(
                self.session,
                action="oauth_client.registered",
                entity_type="oauth_client",
                entity_id=row.client_id,
                workspace_id=workspace_id,
                after={
                    "name": row.name,
                    "scope": row.scope,
                    "grant_types": row.grant_types,
                    "token_endpoint_auth_method": row.token_endpoint_auth_method,
                },
            )
            client = to_client(row)
        return RegisteredClient(client, secret)

    def revoke(self, workspace_id: uuid.UUID, client_id: uuid.UUID) -> None:
        """The client stops working at once: its tokens, refresh tokens and codes."""
        self.directory.access(workspace_id, Action.OAUTH_CLIENTS_MANAGE)
        ended: list[str] = []
        with self._write(workspace_id):
            row = self.session.get(OAuthClientRow, client_id, with_for_update=True)
            if row is None or row.workspace_id != workspace_id:
                raise OAuthClientNotFound()
            if row.revoked_at is None:
                now = utc_now()
                row.revoked_at = now
                ended = end_client_sessions(self.session, client_id, "oauth_client_revoked", now)
                record_event(
                    self.session,
                    action="oauth_client.revoked",
                    entity_type="oauth_client",
                    entity_id=row.client_id,
                    workspace_id=workspace_id,
                    after={"sessions_ended": len(ended)},
                )
        revocations().revoked(ended)

    @contextmanager
    def _write(self, workspace_id: uuid.UUID) -> Iterator[None]:
        """A write transaction holding the directory entry's lock (the cap: see API keys)."""
        if self.session.in_transaction():
            self.session.rollback()
        with self.session.begin():
            self.session.connection(execution_options={"write_transaction": True})
            self.session.execute(
                select(WorkspaceRow.id).where(WorkspaceRow.id == workspace_id).with_for_update()
            )
            yield


def end_client_sessions(
    session: Session, client_id: uuid.UUID, reason: str, now: datetime
) -> list[str]:
    """Revoke the sessions of every grant of the client (in the caller's transaction); their
    ids, for the revocation list once committed."""
    granted = select(OAuthRefreshTokenRow.session_id).where(
        OAuthRefreshTokenRow.client_id == client_id
    )
    coded = select(OAuthAuthorizationCodeRow.session_id).where(
        OAuthAuthorizationCodeRow.client_id == client_id
    )
    ended = list(
        session.scalars(
            select(AuthSessionRow.id).where(
                AuthSessionRow.id.in_(granted.union(coded).scalar_subquery()),
                AuthSessionRow.revoked_at.is_(None),
            )
        )
    )
    if ended:
        session.execute(
            update(AuthSessionRow)
            .where(AuthSessionRow.id.in_(ended))
            .values(revoked_at=now, revoked_reason=reason[:30])
        )
    session.execute(
        update(OAuthRefreshTokenRow)
        .where(
            OAuthRefreshTokenRow.client_id == client_id, OAuthRefreshTokenRow.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )
    return ended
