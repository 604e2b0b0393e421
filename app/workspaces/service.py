"""Workspace use cases, free of HTTP: create, list, get, rename, delete, and placement on shards.

The directory (``workspaces`` in the control database) is the one place that knows where a
workspace's data lives. Placement: a workspace id hashes to one of ``LOGICAL_SHARDS`` logical
shards, and the logical shards are spread over the configured databases; the chosen database is
written into the directory, so it can change later (a move) without rehashing anything.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, select
from sqlalchemy.orm import Session

from app.audit.service import lock_chain, record_event
from app.auth.errors import PermissionDenied
from app.auth.models import IpRuleRow, MembershipRow
from app.auth.permissions import Action, Role
from app.auth.principal import SYSTEM, Principal, PrincipalKind
from app.core.errors import ApiProblem, ProblemType, ValidationProblem
from app.db.shards import ShardRegistry, outside_transaction
from app.ip_rules.service import AddressNotAllowed, workspace_allows
from app.tasks.models import TaskRow, TaskTagRow, new_task_id, utc_now
from app.workspaces.access import NoSuchWorkspace, authorize, effective_role
from app.workspaces.models import (
    DEFAULT_WORKSPACE_ID,
    Workspace,
    WorkspaceRow,
    WorkspaceState,
    workspace_from_row,
)
from app.workspaces.moves import WorkspaceMoving, take_write_lock
from app.workspaces.schemas import workspace_name

logger = logging.getLogger(__name__)
LOGICAL_SHARDS = 64

# Called with the current workspace: None lets the write go ahead, a string says why not (412).
Precondition = Callable[[Workspace], str | None]


class WorkspaceNotFound(ApiProblem):
    problem_type = ProblemType(
        slug="workspace-not-found",
        title="Workspace not found",
        status=404,
        description="No workspace has this id (or it was deleted).",
    )

    def __init__(self) -> None:
        super().__init__("There is no workspace with this id.")


class WorkspacePreconditionFailed(ApiProblem):
    problem_type = ProblemType(
        slug="workspace-precondition-failed",
        title="Precondition failed",
        status=412,
        description="A precondition of the write failed (usually a stale If-Match ETag); "
        "nothing was written. GET the workspace again and retry.",
    )


class DefaultWorkspaceInUse(ApiProblem):
    problem_type = ProblemType(
        slug="default-workspace-in-use",
        title="The default workspace cannot be deleted",
        status=409,
        description="API v1 serves the default workspace until v1's sunset, so it cannot be "
        "deleted: v1 clients would lose every request. Delete its tasks instead.",
    )

    def __init__(self) -> None:
        super().__init__("API v1 serves this workspace; it cannot be deleted before v1's sunset.")


@dataclass(frozen=True)
class WorkspacePage:
    items: list[Workspace]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def logical_shard(workspace_id: uuid.UUID) -> int:
    # The low bits of a UUIDv7 are random, so workspaces spread evenly.
    return workspace_id.int % LOGICAL_SHARDS


def place(workspace_id: uuid.UUID, shard_names: list[str]) -> str:
    """The database a new workspace goes to: its logical shard, spread over the databases."""
    return sorted(shard_names)[logical_shard(workspace_id) % len(shard_names)]


_DIRECTORY = WorkspaceRow.__table__
_MEMBERSHIPS = MembershipRow.__table__
_IP_RULES = IpRuleRow.__table__
# Built once: every request on a workspace's tasks runs it. The directory entry and the caller's
# role there, in one round trip.
_DIRECTORY_ENTRY = (
    select(
        _DIRECTORY,
        _MEMBERSHIPS.c.role.label("member_role"),
        # Whether the workspace has an IP allow list: only then is it read (one more query).
        exists().where(_IP_RULES.c.workspace_id == _DIRECTORY.c.id).label("has_ip_rules"),
    )
    .outerjoin(
        _MEMBERSHIPS,
        and_(
            _MEMBERSHIPS.c.workspace_id == _DIRECTORY.c.id,
            _MEMBERSHIPS.c.user_id == bindparam("user_id"),
        ),
    )
    .where(_DIRECTORY.c.id == bindparam("workspace_id"))
)


@dataclass(frozen=True, slots=True)
class WorkspaceAccess:
    """A workspace and the role the caller acts with there (None: the system itself)."""

    workspace: Workspace
    role: Role | None


class WorkspaceService:
    def __init__(
        self,
        session: Session,
        shards: ShardRegistry,
        shard_session: Callable[[str], Session],
        *,
        clock: Callable[[], Any] = utc_now,
        new_id: Callable[[], uuid.UUID] = new_task_id,
        principal: Principal = SYSTEM,
        client_ip: str | None = None,
    ) -> None:
        self.client_ip = client_ip  # the request's client, for IP allow lists
        self.session = session
        self.shards = shards
        self.shard_session = shard_session
        self.principal = principal
        self._clock = clock
        self._new_id = new_id

    def get(self, workspace_id: uuid.UUID, action: Action = Action.WORKSPACE_READ) -> Workspace:
        return self.access(workspace_id, action).workspace

    def access(
        self, workspace_id: uuid.UUID, action: Action = Action.WORKSPACE_READ
    ) -> WorkspaceAccess:
        """The workspace, if the caller may do ``action`` there: 404 without a role, 403 when
        the role does not allow it."""
        # A plain row, not an ORM object: every request on a workspace's tasks starts here.
        row = (
            outside_transaction(self.session)
            .execute(
                _DIRECTORY_ENTRY,
                {"workspace_id": workspace_id, "user_id": self.principal.user_id},
            )
            .one_or_none()
        )
        if row is None:
            raise WorkspaceNotFound()
        role = self._authorize(workspace_id, row.member_role, action)
        # After the role check: an outsider gets the 404, never a hint the workspace exists.
        if row.has_ip_rules:
            self._check_address(workspace_id)
        return WorkspaceAccess(workspace_from_row(row), role)

    def authorize(self, workspace_id: uuid.UUID, action: Action) -> Role | None:
        """Check ``action`` against the caller's current role (read now, not from a cache)."""
        member_role = self.session.scalar(
            select(MembershipRow.role).where(
                MembershipRow.workspace_id == workspace_id,
                MembershipRow.user_id == self.principal.user_id,
            )
        )
        role = self._authorize(workspace_id, member_role, action)
        self._check_address(workspace_id)  # writes that skip access() (rename, delete) too
        return role

    def _check_address(self, workspace_id: uuid.UUID) -> None:
        """403 when the workspace has an IP allow list without the caller's address."""
        if self.principal.kind is PrincipalKind.SYSTEM:
            return
        if not workspace_allows(self.session, workspace_id, self.client_ip):
            raise AddressNotAllowed()

    def _authorize(
        self, workspace_id: uuid.UUID, member_role: str | None, action: Action
    ) -> Role | None:
        if self.principal.kind is PrincipalKind.SYSTEM:
            return None
        role = effective_role(self.principal, workspace_id, member_role)
        try:
            authorize(self.principal, role, action)
        except NoSuchWorkspace:
            raise WorkspaceNotFound() from None
        return role

    def list(self, page: int, per_page: int) -> WorkspacePage:
        """The caller's workspaces (a key or client: its own workspace), oldest first."""
        mine = select(WorkspaceRow)
        if self.principal.workspace_id is not None:
            mine = mine.where(WorkspaceRow.id == self.principal.workspace_id)
        elif self.principal.kind is not PrincipalKind.SYSTEM:
            mine = mine.join(
                MembershipRow,
                and_(
                    MembershipRow.workspace_id == WorkspaceRow.id,
                    MembershipRow.user_id == self.principal.user_id,
                ),
            )
        total = self.session.scalar(select(func.count()).select_from(mine.subquery())) or 0
        result = WorkspacePage([], page, per_page, total)
        if page > result.pages:
            raise ValidationProblem(
                [
                    {
                        "parameter": "page",
                        "detail": f"must be at most {result.pages} (the last page)",
                    }
                ],
                status=400,
            )
        rows = self.session.scalars(
            mine.order_by(WorkspaceRow.created_at, WorkspaceRow.id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
        return WorkspacePage([row.to_domain() for row in rows], page, per_page, total)

    def create(self, document: Any, *, workspace_id: uuid.UUID | None = None) -> Workspace:
        """A new workspace; a user who creates one is its owner."""
        if self.principal.kind not in {PrincipalKind.USER, PrincipalKind.SYSTEM} or (
            self.principal.scopes is not None
        ):
            raise PermissionDenied("Only a signed-in user may create a workspace, not a key.")
        name = workspace_name(document)
        new_id = workspace_id or self._new_id()
        now = self._clock()
        row = WorkspaceRow(
            id=new_id,
            name=name,
            shard=place(new_id, self.shards.names),
            state=WorkspaceState.ACTIVE.value,
            created_at=now,
            updated_at=now,
            version=1,
        )
        with self._write():
            self.session.add(row)
            self.session.flush()
            _audit(self.session, "workspace.created", None, row.to_domain())
            if self.principal.user_id is not None:
                self.session.add(
                    MembershipRow(
                        workspace_id=new_id,
                        user_id=self.principal.user_id,
                        role=Role.OWNER.value,
                        created_at=now,
                        updated_at=now,
                    )
                )
        return row.to_domain()

    def rename(
        self, workspace_id: uuid.UUID, document: Any, *, precondition: Precondition | None = None
    ) -> Workspace:
        name = workspace_name(document)
        with self._write():
            self.authorize(workspace_id, Action.WORKSPACE_RENAME)
            row = self._locked(workspace_id, precondition)
            if row.name != name:
                before = row.to_domain()
                row.name = name
                row.updated_at = self._clock()
                row.version += 1
                _audit(self.session, "workspace.renamed", before, row.to_domain())
        return row.to_domain()

    def delete(self, workspace_id: uuid.UUID, *, precondition: Precondition | None = None) -> None:
        """Remove the workspace's tasks from its shard, then its directory entry.

        Two databases, so not one transaction. First the entry becomes ``deleting``, with the
        precondition checked under the row lock (committed: from then on every write to the
        workspace answers 503, see ``guard_write``). Then, holding the workspace's write lock on
        the shard exclusively (writes already in flight finish first), its rows go; then the
        entry. A failure before the entry is gone puts it back to ``active``; whatever was
        already removed stays removed, and deleting again finishes the job.
        """
        self.get(workspace_id, Action.WORKSPACE_DELETE)
        if workspace_id == DEFAULT_WORKSPACE_ID:
            raise DefaultWorkspaceInUse()
        with self._write():
            self.authorize(workspace_id, Action.WORKSPACE_DELETE)
            row = self._locked(workspace_id, precondition)
            row.state = WorkspaceState.DELETING.value
            shard_name = row.shard
        try:
            shard = self.shard_session(shard_name)
            with shard.begin():
                shard.connection(execution_options={"write_transaction": True})
                # The audit chain's lock first, as every task write takes it: one lock order.
                lock_chain(shard, workspace_id)
                take_write_lock(shard, workspace_id, shared=False)  # in-flight writes finish
                shard.execute(delete(TaskTagRow).where(TaskTagRow.workspace_id == workspace_id))
                removed = shard.execute(delete(TaskRow).where(TaskRow.workspace_id == workspace_id))
                if removed.rowcount:  # the shard's own event: its chain records what left it
                    record_event(
                        shard,
                        action="workspace.tasks_deleted",
                        entity_type="workspace",
                        entity_id=workspace_id,
                        workspace_id=workspace_id,
                        changes={"task_count": {"before": removed.rowcount, "after": 0}},
                    )
            with self._write():
                row = self._entry(workspace_id)
                _audit(self.session, "workspace.deleted", row.to_domain(), None)
                self.session.delete(row)
        except BaseException:
            self._reactivate(workspace_id)
            raise

    def _entry(self, workspace_id: uuid.UUID) -> WorkspaceRow:
        row = self.session.scalars(
            select(WorkspaceRow).where(WorkspaceRow.id == workspace_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise WorkspaceNotFound()
        return row

    def _reactivate(self, workspace_id: uuid.UUID) -> None:
        """Undo the ``deleting`` mark after a failed delete (best effort: the error that made
        the delete fail is the one to report)."""
        try:
            with self._write():
                row = self.session.get(WorkspaceRow, workspace_id)
                if row is not None and row.state == WorkspaceState.DELETING.value:
                    row.state = WorkspaceState.ACTIVE.value
        except Exception:
            logger.exception("workspace %s stays marked deleting; delete it again", workspace_id)

    def _write(self) -> Any:
        """A write transaction on the directory (BEGIN IMMEDIATE on SQLite)."""
        if self.session.in_transaction():
            self.session.rollback()
        transaction = self.session.begin()
        self.session.connection(execution_options={"write_transaction": True})
        return transaction

    def _locked(self, workspace_id: uuid.UUID, precondition: Precondition | None) -> WorkspaceRow:
        row = self.session.scalars(
            select(WorkspaceRow).where(WorkspaceRow.id == workspace_id).with_for_update()
        ).one_or_none()
        if row is None:
            raise WorkspaceNotFound()
        if row.state == WorkspaceState.DELETING.value:
            raise WorkspaceMoving("The workspace is being deleted.")
        if row.state != WorkspaceState.ACTIVE.value:
            raise WorkspaceMoving()
        if precondition is not None and (failure := precondition(row.to_domain())) is not None:
            raise WorkspacePreconditionFailed(failure)
        return row


def _audit(
    session: Session, action: str, before: Workspace | None, after: Workspace | None
) -> None:
    """The directory change's audit event, in the control database, in the change's transaction."""
    workspace = after or before
    assert workspace is not None
    record_event(
        session,
        action=action,
        entity_type="workspace",
        entity_id=workspace.id,
        workspace_id=workspace.id,
        before=None if before is None else _snapshot(before),
        after=None if after is None else _snapshot(after),
    )


def _snapshot(workspace: Workspace) -> dict[str, Any]:
    return {
        "id": workspace.id,
        "name": workspace.name,
        "shard": workspace.shard,
        "state": workspace.state,
        "created_at": workspace.created_at,
        "updated_at": workspace.updated_at,
    }
