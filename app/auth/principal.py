"""The caller of the current request, once authenticated: a user (JWT), an API key or an OAuth
client. Everything that decides access (services, rate limits, audit) reads it from here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from flask import g, has_request_context


class PrincipalKind(StrEnum):
    USER = "user"  # a user's access token (login) or an OAuth token acting for a user
    API_KEY = "key"  # an API key: one workspace, read or read+write
    CLIENT = "client"  # an OAuth client acting for itself (client credentials)
    SYSTEM = "system"  # no request: the CLI, seeding, maintenance; every check passes


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    # The user the caller acts for (None for an API key or a client acting for itself).
    user_id: uuid.UUID | None
    # Stable and short, for audit entries and rate-limit keys: "user:<uuid>", "key:<prefix>".
    subject: str
    # What the credential may do at most (a role may allow less). None: no limit beyond roles.
    scopes: frozenset[Scope] | None = None
    # API keys and client credentials are bound to one workspace; None: any the user belongs to.
    workspace_id: uuid.UUID | None = None
    # The session (refresh token family) an access token belongs to, for log out.
    session_id: str | None = None
    token_id: str | None = None

    def allows(self, scope: Scope) -> bool:
        return self.scopes is None or scope in self.scopes


SYSTEM = Principal(kind=PrincipalKind.SYSTEM, user_id=None, subject="system")

_G_KEY = "principal"


def set_current_principal(principal: Principal | None) -> None:
    setattr(g, _G_KEY, principal)


def current_principal() -> Principal | None:
    """The authenticated caller, or None (anonymous, or outside a request)."""
    if not has_request_context():
        return None
    return g.get(_G_KEY)
