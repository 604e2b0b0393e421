"""Accounts made outside a request: the first platform administrator (``flask users
create-admin``), the development demo user, and owners for workspaces that have none (a
chapter 3 database after its upgrade)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.audit.service import record_event
from app.auth import credentials
from app.auth.models import MembershipRow, UserRow
from app.auth.permissions import Role
from app.auth.service import AccountService, User, to_user
from app.tasks.models import utc_now
from app.workspaces.models import DEFAULT_WORKSPACE_ID, WorkspaceRow

# Development only (SEED_DEMO_DATA, which testing and production refuse): the account
# ./scripts/run prepares, so Swagger UI's "Authorize" works on a fresh clone.
DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "learner passphrase for local development"


def create_admin(session: Session, config: Any, email: str, password: str) -> tuple[User, int]:
    """A platform administrator (a new account, or an existing one promoted), made owner of
    every workspace that has no owner. Returns the user and how many workspaces it now owns."""
    accounts = AccountService(session, config)
    try:
        normalised = credentials.normalise_email(email)
    except ValueError:
        normalised = None  # register() below says what is wrong with it
    row = None
    if normalised is not None:
        row = session.scalars(select(UserRow).where(UserRow.email == normalised)).first()
    if row is None:
        user = accounts.register(email, password, platform_admin=True)
    else:
        with accounts.write_transaction():
            locked = session.get(UserRow, row.id, with_for_update=True)
            assert locked is not None
            if not locked.is_platform_admin:
                locked.is_platform_admin = True
                locked.updated_at = utc_now()
                accounts.audit("user.promoted", locked.id, {"platform_admin": True})
        user = to_user(locked)
    return user, adopt_orphan_workspaces(session, user.id)


def adopt_orphan_workspaces(session: Session, user_id: uuid.UUID) -> int:
    """Make ``user_id`` the owner of every workspace without an owner; how many."""
    owners = select(MembershipRow.workspace_id).where(
        MembershipRow.workspace_id == WorkspaceRow.id, MembershipRow.role == Role.OWNER.value
    )
    if session.in_transaction():
        session.rollback()
    with session.begin():
        session.connection(execution_options={"write_transaction": True})
        orphans = list(session.scalars(select(WorkspaceRow.id).where(~exists(owners))))
        now = utc_now()
        for workspace_id in orphans:
            existing = session.get(MembershipRow, (workspace_id, user_id))
            if existing is not None:
                existing.role, existing.updated_at = Role.OWNER.value, now
            else:
                session.add(
                    MembershipRow(
                        workspace_id=workspace_id,
                        user_id=user_id,
                        role=Role.OWNER.value,
                        created_at=now,
                        updated_at=now,
                    )
                )
            record_event(
                session,
                action="membership.added",
                entity_type="membership",
                entity_id=user_id,
                workspace_id=workspace_id,
                changes={"role": {"before": None, "after": Role.OWNER.value}},
            )
    return len(orphans)


def seed_demo_user(session: Session, config: Any) -> bool:
    """Development: the demo account, platform admin and owner of the default workspace."""
    if session.scalar(select(UserRow.id).where(UserRow.email == DEMO_EMAIL)) is not None:
        return False
    user, _ = create_admin(session, config, DEMO_EMAIL, DEMO_PASSWORD)
    if session.in_transaction():
        session.rollback()
    with session.begin():
        if session.get(MembershipRow, (DEFAULT_WORKSPACE_ID, user.id)) is None:
            now = utc_now()
            session.add(
                MembershipRow(
                    workspace_id=DEFAULT_WORKSPACE_ID,
                    user_id=user.id,
                    role=Role.OWNER.value,
                    created_at=now,
                    updated_at=now,
                )
            )
    return True
