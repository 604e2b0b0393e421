"""Tables of the OAuth 2 authorization server, in the control database (a client belongs to a
workspace, but its users and sessions span workspaces). Codes and refresh tokens are stored as
SHA-256 hashes only: a copy of the table lets nobody in."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UtcDateTime


class OAuthClientRow(Base):
    """A registered client: confidential (a secret, ``client_secret_basic``/``_post``) or public
    (``none``: a native or browser app that cannot keep a secret; PKCE protects it)."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64))  # None: a public client
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100))
    redirect_uris: Mapped[str] = mapped_column(String(2100))  # newline-separated, exact match
    grant_types: Mapped[str] = mapped_column(String(100))  # space-separated
    scope: Mapped[str] = mapped_column(String(50))  # "read" or "read write": the most it gets
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(30))
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Client-credentials tokens issued before this instant are dead (RFC 7009 revocation of one
    # of them: they share no session, so the client's whole batch ends).
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index(None, "workspace_id", "created_at"),)


class OAuthAuthorizationCodeRow(Base):
    """An authorization code: single use, short-lived, bound to its client, redirect URI, PKCE
    challenge and the session the user's sign-in on the consent page started."""

    __tablename__ = "oauth_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(36))  # auth_sessions.id: the grant's session
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(50))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(10))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class OAuthRefreshTokenRow(Base):
    """A refresh token of an authorization-code grant: single use, rotated on every refresh
    (``replaced_by``); presenting a used one ends the grant's session."""

    __tablename__ = "oauth_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE")
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    session_id: Mapped[str] = mapped_column(String(36), index=True)
    scope: Mapped[str] = mapped_column(String(50))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    replaced_by: Mapped[str | None] = mapped_column(String(64))
