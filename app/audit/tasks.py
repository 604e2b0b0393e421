"""Task writes, audited: one event per created, updated or deleted task, in the write's own
transaction on the task's shard (a bulk request: one event per operation)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from app.audit.service import lock_chain, record_event
from app.tasks.models import Task
from app.tasks.repository import SqlAlchemyTaskRepository

TASK = "task"


def task_snapshot(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "status": task.status,
        "priority": task.priority,
        "due_date": task.due_date,
        "tags": task.tags,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    }


def record_task_change(
    session: Session, workspace_id: uuid.UUID, before: Task | None, after: Task | None
) -> None:
    """The repository's change listener. PUT and PATCH both arrive as before/after values, so
    both are ``task.updated``; the changed fields say what happened."""
    if before is None and after is None:
        return
    action = (
        "task.created" if before is None else "task.deleted" if after is None else "task.updated"
    )
    task = after if after is not None else before
    assert task is not None
    record_event(
        session,
        action=action,
        entity_type=TASK,
        entity_id=task.id,
        workspace_id=workspace_id,
        before=None if before is None else task_snapshot(before),
        after=None if after is None else task_snapshot(after),
    )


class AuditedTaskRepository(SqlAlchemyTaskRepository):
    """The SQL repository, recording every change, and taking the workspace chain's lock first.

    First, not at the first event: a bulk request locks task rows for its second operation after
    appending its first event, while a lone PATCH locks its row and then wants the chain; taking
    the chain lock at the start of every unit of work gives all writers one lock order, so
    PostgreSQL never has to break a deadlock between them.
    """

    def __init__(self, session: Session, workspace_id: uuid.UUID, **kwargs: Any) -> None:
        super().__init__(session, workspace_id, on_change=record_task_change, **kwargs)
        self._outermost = True

    @contextmanager
    def atomic(self) -> Iterator[None]:  # type: ignore[override]
        outermost, self._outermost = self._outermost, False
        try:
            with super().atomic():
                if outermost:
                    lock_chain(self.session, self.workspace_id)
                yield
        finally:
            self._outermost = outermost
