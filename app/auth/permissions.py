"""Who may do what: the one permission table of the API (the chapter doc prints it from here).

Roles are per workspace. Every service checks an ``Action`` against the caller's role in the
workspace before it reads or writes anything (``require``); routes only pass the caller along. A
caller with no role in a workspace gets the same 404 as for a workspace that does not exist:
another tenant's ids reveal nothing.

API keys and OAuth tokens carry scopes on top: ``read`` allows only the read actions, ``write``
the task writes too; managing a workspace (members, keys, clients, IP lists, delete, export,
audit verification) needs a user signed in with a password, never a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.auth.principal import Scope


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class Action(StrEnum):
    WORKSPACE_READ = "workspace.read"
    WORKSPACE_RENAME = "workspace.rename"
    WORKSPACE_DELETE = "workspace.delete"
    WORKSPACE_EXPORT = "workspace.export"
    TASKS_READ = "tasks.read"
    TASKS_WRITE = "tasks.write"
    MEMBERS_READ = "members.read"
    MEMBERS_MANAGE = "members.manage"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    API_KEYS_MANAGE = "api_keys.manage"
    OAUTH_CLIENTS_MANAGE = "oauth_clients.manage"
    IP_ALLOW_LIST_MANAGE = "ip_allow_list.manage"


@dataclass(frozen=True)
class Rule:
    roles: frozenset[Role]
    # The scope a key or OAuth token needs; None: users only (never a key or a client).
    scope: Scope | None


def _rule(*roles: Role, scope: Scope | None) -> Rule:
    return Rule(frozenset(roles), scope)


_ALL = (Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER)
_MANAGERS = (Role.OWNER, Role.ADMIN)

PERMISSIONS: dict[Action, Rule] = {
    Action.WORKSPACE_READ: _rule(*_ALL, scope=Scope.READ),
    Action.TASKS_READ: _rule(*_ALL, scope=Scope.READ),
    Action.MEMBERS_READ: _rule(*_ALL, scope=Scope.READ),
    Action.TASKS_WRITE: _rule(Role.OWNER, Role.ADMIN, Role.MEMBER, scope=Scope.WRITE),
    Action.WORKSPACE_RENAME: _rule(*_MANAGERS, scope=None),
    Action.AUDIT_READ: _rule(*_MANAGERS, scope=None),
    Action.AUDIT_VERIFY: _rule(*_MANAGERS, scope=None),
    Action.MEMBERS_MANAGE: _rule(*_MANAGERS, scope=None),
    Action.API_KEYS_MANAGE: _rule(*_MANAGERS, scope=None),
    Action.OAUTH_CLIENTS_MANAGE: _rule(*_MANAGERS, scope=None),
    Action.IP_ALLOW_LIST_MANAGE: _rule(*_MANAGERS, scope=None),
    Action.WORKSPACE_EXPORT: _rule(Role.OWNER, scope=None),
    Action.WORKSPACE_DELETE: _rule(Role.OWNER, scope=None),
}

# What an operation needs, beyond the actions above (``x-permission`` in the spec):
ANY_CALLER = "authenticated"  # any user, key or client
USERS_ONLY = "users"  # a signed-in user (no keys): their own account, creating workspaces
PLATFORM_ADMIN = "platform-admin"  # the admin surface: everyone else gets 404

# Only an owner may make someone an owner, or change or remove an owner.
OWNER_ONLY_ROLES = frozenset({Role.OWNER})

# Platform operations (not about one workspace): platform administrators only, users only.
PLATFORM_ACTIONS = ("backups", "restore", "workspace moves", "workspace import", "IP deny list")


def allowed(role: Role, action: Action) -> bool:
    return role in PERMISSIONS[action].roles


def permission_table() -> list[tuple[str, dict[str, bool], str]]:
    """Rows of (action, {role: allowed}, what a key or token needs), for the docs and tests."""
    rows = []
    for action, rule in PERMISSIONS.items():
        needs = f"scope `{rule.scope.value}`" if rule.scope else "a user (no keys)"
        rows.append((action.value, {role.value: role in rule.roles for role in Role}, needs))
    return rows
