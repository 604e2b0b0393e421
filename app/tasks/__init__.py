"""Tasks: the course's main resource. ``init_tasks`` picks the storage and wires the service."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app

from app.tasks.models import Priority, Status, new_task_id
from app.tasks.repository import InMemoryTaskRepository, TaskRepository
from app.tasks.service import TaskService

_EXTENSION_KEY = "tasks"
logger = logging.getLogger(__name__)

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


def make_repository(app: Flask) -> TaskRepository:
    storage = app.config["TASK_STORAGE"]
    if storage == "memory":
        return InMemoryTaskRepository()
    raise ValueError(f"unknown TASK_STORAGE {storage!r}")


def init_tasks(app: Flask) -> None:
    service = TaskService(make_repository(app))
    app.extensions[_EXTENSION_KEY] = service
    if app.config["TASK_STORAGE"] == "memory" and app.config["APP_ENV"] == "production":
        logger.warning(
            "TASK_STORAGE=memory: tasks live in this process only and vanish on restart; "
            "with several workers each has its own tasks (run one worker until chapter 3)"
        )
    if app.config["SEED_DEMO_DATA"]:
        seed_tasks(service, count=len(DEMO_TASKS))


def task_service() -> TaskService:
    return current_app.extensions[_EXTENSION_KEY]


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
