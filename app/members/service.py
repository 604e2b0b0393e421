"""Membership use cases, free of HTTP. The rules beyond the permission table:

* only an owner may make someone an owner, or change or remove an owner;
* a workspace always keeps at least one owner: the last one can be neither demoted nor removed
  (checked under the directory entry's row lock, so two concurrent demotions cannot both pass);
* anyone may leave a workspace (remove themselves), the last owner excepted.

Every change is an audit event in the workspace's chain (control database), and takes effect on
the member's next request: roles are read per request, never carried in tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.service import record_event
from app.auth.credentials import normalise_email
from app.auth.errors import PermissionDenied
from app.auth.models import MembershipRow, UserRow
from app.auth.permissions import Action, Role
from app.core.errors import ApiProblem, ProblemType, ValidationProblem
from app.tasks.models import utc_now
from app.workspaces.models import WorkspaceRow
from app.workspaces.service import WorkspaceNotFound, WorkspaceService

MAX_MEMBERS_LISTED = 1000  # a page of members; workspaces are teams, not crowds


class MemberNotFound(ApiProblem):
    problem_type = ProblemType(
        slug="member-not-found",
        title="Member not found",
        status=404,
        description="This user is not a member of the workspace.",
    )

    def __init__(self) -> None:
        super().__init__("This user is not a member of the workspace.")


class AlreadyMember(ApiProblem):
    problem_type = ProblemType(
        slug="already-member",
        title="Already a member",
        status=409,
        description="The user is already a member; change their role with PATCH instead.",
    )

    def __init__(self) -> None:
        super().__init__("This user is already a member; PATCH their membership to change it.")


class LastOwner(ApiProblem):
    problem_type = ProblemType(
        slug="last-owner",
        title="The last owner stays",
        status=409,
        description="A workspace needs an owner: make someone else an owner first, or delete "
        "the workspace.",
    )

    def __init__(self) -> None:
        super().__init__("This is the workspace's last owner; make another owner first.")


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID
    email: str
    role: Role
    created_at: datetime
    updated_at: datetime


def role_of(document: Any, pointer: str = "#/role") -> Role:
    value = document.get("role") if isinstance(document, dict) else None
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(role.value for role in Role)
        detail = f"must be one of {allowed}"
        raise ValidationProblem([{"pointer": pointer, "detail": detail}]) from None


class MembershipService:
    def __init__(self, session: Session, directory: WorkspaceService) -> None:
        self.session = session
        self.directory = directory
        self.principal = directory.principal

    def list(self, workspace_id: uuid.UUID) -> list[Member]:
        self.directory.access(workspace_id, Action.MEMBERS_READ)
        rows = self.session.execute(
            select(MembershipRow, UserRow.email)
            .join(UserRow, UserRow.id == MembershipRow.user_id)
            .where(MembershipRow.workspace_id == workspace_id)
            .order_by(MembershipRow.created_at, MembershipRow.user_id)
            .limit(MAX_MEMBERS_LISTED)
        )
        return [_member(row, email) for row, email in rows]

    def get(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Member:
        self.directory.access(workspace_id, Action.MEMBERS_READ)
        found = self.session.execute(
            select(MembershipRow, UserRow.email)
            .join(UserRow, UserRow.id == MembershipRow.user_id)
            .where(MembershipRow.workspace_id == workspace_id, MembershipRow.user_id == user_id)
        ).one_or_none()
        if found is None:
            raise MemberNotFound()
        return _member(*found)

    def add(self, workspace_id: uuid.UUID, email: str, role: Role) -> Member:
        self.directory.access(workspace_id, Action.MEMBERS_MANAGE)
        try:
            email = normalise_email(email)
        except ValueError as exc:
            raise ValidationProblem([{"pointer": "#/email", "detail": str(exc)}]) from None
        with self._write(workspace_id, Action.MEMBERS_MANAGE) as my_role:
            self._may_grant(my_role, role)
            user = self.session.scalars(select(UserRow).where(UserRow.email == email)).first()
            if user is None:
                raise ValidationProblem(
                    [
                        {
                            "pointer": "#/email",
                            "detail": "no account has this email; ask them to register first",
                        }
                    ]  # fmt: skip
                )
            if self.session.get(MembershipRow, (workspace_id, user.id)) is not None:
                raise AlreadyMember()
            now = utc_now()
            row = MembershipRow(
                workspace_id=workspace_id,
                user_id=user.id,
                role=role.value,
                created_at=now,
                updated_at=now,
            )
            self.session.add(row)
            self.session.flush()
            self._audit("membership.added", workspace_id, user.id, None, role)
        return _member(row, user.email)

    def change_role(self, workspace_id: uuid.UUID, user_id: uuid.UUID, role: Role) -> Member:
        self.directory.access(workspace_id, Action.MEMBERS_MANAGE)
        with self._write(workspace_id, Action.MEMBERS_MANAGE) as my_role:
            row = self._membership(workspace_id, user_id)
            before = Role(row.role)
            if before is Role.OWNER or role is Role.OWNER:
                self._may_grant(my_role, Role.OWNER)
            if before is Role.OWNER and role is not Role.OWNER:
                self._keep_an_owner(workspace_id)
            if before is not role:
                row.role, row.updated_at = role.value, utc_now()
                self._audit("membership.role_changed", workspace_id, user_id, before, role)
            email = self.session.scalar(select(UserRow.email).where(UserRow.id == user_id))
        return _member(row, email or "")

    def remove(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> None:
        leaving = user_id == self.principal.user_id
        # Leaving needs no management right; removing someone else does.
        action = Action.MEMBERS_READ if leaving else Action.MEMBERS_MANAGE
        self.directory.access(workspace_id, action)
        with self._write(workspace_id, action) as my_role:
            row = self._membership(workspace_id, user_id)
            before = Role(row.role)
            if before is Role.OWNER:
                if not leaving:
                    self._may_grant(my_role, Role.OWNER)
                self._keep_an_owner(workspace_id)
            self.session.delete(row)
            self._audit("membership.removed", workspace_id, user_id, before, None)

    # --- helpers ---------------------------------------------------------------------------------

    @contextmanager
    def _write(self, workspace_id: uuid.UUID, action: Action) -> Iterator[Role | None]:
        """A write transaction holding the directory entry's lock; yields the caller's role, read
        again inside it (it may have changed since the first check)."""
        if self.session.in_transaction():
            self.session.rollback()
        with self.session.begin():
            self.session.connection(execution_options={"write_transaction": True})
            locked = self.session.scalar(
                select(WorkspaceRow.id).where(WorkspaceRow.id == workspace_id).with_for_update()
            )
            if locked is None:
                raise WorkspaceNotFound()
            yield self.directory.authorize(workspace_id, action)

    def _may_grant(self, my_role: Role | None, role: Role) -> None:
        if role is Role.OWNER and my_role is not None and my_role is not Role.OWNER:
            raise PermissionDenied("Only an owner may make, change or remove an owner.")

    def _keep_an_owner(self, workspace_id: uuid.UUID) -> None:
        owners = self.session.scalar(
            select(func.count()).where(
                MembershipRow.workspace_id == workspace_id, MembershipRow.role == Role.OWNER.value
            )
        )
        if (owners or 0) <= 1:
            raise LastOwner()

    def _membership(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> MembershipRow:
        row = self.session.get(MembershipRow, (workspace_id, user_id), with_for_update=True)
        if row is None:
            raise MemberNotFound()
        return row

    def _audit(
        self,
        action: str,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID,
        before: Role | None,
        after: Role | None,
    ) -> None:
        record_event(
            self.session,
            action=action,
            entity_type="membership",
            entity_id=user_id,
            workspace_id=workspace_id,
            changes={"role": {"before": before and before.value, "after": after and after.value}},
        )


def _member(row: MembershipRow, email: str) -> Member:
    return Member(row.user_id, email, Role(row.role), row.created_at, row.updated_at)
