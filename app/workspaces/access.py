"""Who may do what in a workspace: the caller's role there (``memberships``) against the one
permission table (app/auth/permissions.py). Every workspace and task use case goes through
``authorize``; a caller without a role there gets the same 404 as for a missing workspace."""

from __future__ import annotations

import uuid

from app.auth.errors import AuthenticationRequired, PermissionDenied
from app.auth.permissions import PERMISSIONS, Action, Role
from app.auth.principal import Principal, PrincipalKind, Scope


class NoSuchWorkspace(Exception):
    """Raised as the workspace service's 404 problem (see WorkspaceNotFound)."""


def effective_role(
    principal: Principal, workspace_id: uuid.UUID, member_role: str | None
) -> Role | None:
    """The role the caller acts with in the workspace, or None (no access at all)."""
    if principal.workspace_id is not None and principal.workspace_id != workspace_id:
        return None  # a key or client bound to another workspace
    if principal.kind in (PrincipalKind.API_KEY, PrincipalKind.CLIENT):
        # A key acts as a member (write scope) or a viewer (read only) of its workspace.
        return Role.MEMBER if principal.allows(Scope.WRITE) else Role.VIEWER
    if member_role is None:
        return None
    return Role(member_role)


def authorize(principal: Principal, role: Role | None, action: Action) -> None:
    """Return if ``principal`` acting as ``role`` may do ``action``; raise otherwise:
    NoSuchWorkspace (no role: 404), PermissionDenied (403)."""
    if principal.kind is PrincipalKind.SYSTEM:
        return
    if role is None:
        raise NoSuchWorkspace()
    rule = PERMISSIONS[action]
    # Management needs a user signed in with a password: not a key, not a client, and not a
    # user's OAuth token either (it carries scopes).
    if rule.scope is None and (
        principal.kind is not PrincipalKind.USER or principal.scopes is not None
    ):
        raise PermissionDenied(
            f"Only a signed-in user may do this ({action}), not a key or client."
        )
    if rule.scope is not None and not principal.allows(rule.scope):
        raise PermissionDenied(
            f"This needs the {rule.scope} scope ({action}).", scope=rule.scope.value
        )
    if role not in rule.roles:
        allowed = ", ".join(r.value for r in Role if r in rule.roles)
        raise PermissionDenied(f"Your role here is {role}; {action} needs one of: {allowed}.")


def require_user(principal: Principal | None) -> Principal:
    if principal is None:
        raise AuthenticationRequired()
    return principal
