"""Tasks: the course's main resource. ``task_service(workspace_id)`` is the service on one
workspace's tasks, in the shard the directory names for it."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from app.audit.tasks import AuditedTaskRepository
from app.auth.permissions import Action
from app.db.shards import note_write, shard_session
from app.tasks.models import Priority, Status, new_task_id
from app.tasks.repository import TaskQuery
from app.tasks.service import TaskService
from app.workspaces import workspace_service
from app.workspaces.models import DEFAULT_WORKSPACE_ID
from app.workspaces.moves import guard_write

DEMO_TASKS = [
    {"title": "Read chapter 2", "status": "in_progress", "priority": "high", "tags": ["course"]},
    {"title": "Try the Swagger UI", "priority": "medium", "tags": ["course", "swagger"]},
    {"title": "Filter tasks by status", "status": "todo", "priority": "low", "tags": ["api"]},
    {
        "title": "Send a conditional GET",
        "description": "Repeat a GET with If-None-Match and watch for 304.",
        "priority": "urgent",
        "tags": ["api", "caching"],
    },
    {"title": "Celebrate chapter 1", "status": "done", "priority": "medium", "tags": ["course"]},
]


def task_service(workspace_id: uuid.UUID = DEFAULT_WORKSPACE_ID) -> TaskService:
    """The service on ``workspace_id``'s tasks for this request's caller: 404 problem if there
    is no such workspace or the caller has no role there; each use case then checks its own
    action (a viewer reads, a member writes) against that role."""
    directory = workspace_service()
    access = directory.access(workspace_id, Action.TASKS_READ)
    workspace = access.workspace
    # Looked up: hold no lock on the control database while working on the shard.
    directory.session.rollback()
    repository = AuditedTaskRepository(
        shard_session(workspace.shard),
        workspace.id,
        read_session=shard_session(workspace.shard, read=True),
        on_commit=lambda: note_write(workspace.shard),
    )

    def guard() -> None:  # inside each write's transaction: 503 while the workspace moves
        guard_write(repository.session, directory.session, workspace.id, workspace.shard)

    def authorize(action: Action) -> None:
        directory._authorize(workspace.id, access.role.value if access.role else None, action)

    return TaskService(repository, write_guard=guard, authorize=authorize)


def seed_tasks(service: TaskService, count: int) -> None:
    """Deterministic tasks (same ids and timestamps every time), so every worker serves the same
    data: the demo tasks first, then numbered ones."""
    base = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    for index in range(count):
        if index < len(DEMO_TASKS):
            document = dict(DEMO_TASKS[index])
        else:
            document = {
                "title": f"Task {index + 1}",
                "status": list(Status)[index % len(Status)].value,
                "priority": list(Priority)[index % len(Priority)].value,
                "tags": [f"batch-{index % 5}"],
                "due_date": (base + timedelta(days=index % 30)).isoformat(),
            }
        created = base + timedelta(minutes=index)
        task_id = new_task_id(
            int(created.timestamp() * 1000), hashlib.blake2b(str(index).encode()).digest()[:10]
        )
        seeded = TaskService(
            service.repository, clock=lambda at=created: at, new_id=lambda tid=task_id: tid
        )
        seeded.create(document)


def seed_demo_tasks() -> int:
    """Seed the demo tasks into the default workspace if it has none; how many were added."""
    service = task_service(DEFAULT_WORKSPACE_ID)
    if service.repository.find(TaskQuery(per_page=1)).total:
        return 0
    seed_tasks(service, count=len(DEMO_TASKS))
    return len(DEMO_TASKS)
