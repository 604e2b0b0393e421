"""Task storage behind an interface: the service never knows where tasks live.

Chapter 3 adds a SQLAlchemy implementation; the in-memory one stays for tests and demos.
"""

from __future__ import annotations

import math
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.tasks.models import PRIORITY_RANK, STATUS_RANK, Priority, Status, Task

SORTABLE_FIELDS = ("title", "status", "priority", "due_date", "created_at", "updated_at")
DEFAULT_SORT: tuple[tuple[str, bool], ...] = (("created_at", True),)  # newest first


@dataclass(frozen=True)
class TaskQuery:
    """Filters (all of them must hold), sort keys (field, descending) and the page wanted."""

    statuses: frozenset[Status] = frozenset()
    priorities: frozenset[Priority] = frozenset()
    tags: frozenset[str] = frozenset()  # a task must carry every one
    due_after: datetime | None = None  # inclusive
    due_before: datetime | None = None  # exclusive
    text: str | None = None  # case-insensitive, in title or description
    sort: tuple[tuple[str, bool], ...] = DEFAULT_SORT
    page: int = 1
    per_page: int = 20


@dataclass(frozen=True)
class Page:
    items: list[Task]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """At least 1: an empty collection still has one (empty) page."""
        return max(1, math.ceil(self.total / self.per_page))


class TaskRepository(ABC):
    """What the service needs from storage. Every write happens inside ``atomic()``."""

    @abstractmethod
    def get(self, task_id: uuid.UUID) -> Task | None: ...

    @abstractmethod
    def add(self, task: Task) -> None: ...

    @abstractmethod
    def replace(self, task: Task) -> None: ...

    @abstractmethod
    def delete(self, task_id: uuid.UUID) -> None: ...

    @abstractmethod
    def find(self, query: TaskQuery) -> Page:
        """The requested page of tasks matching the query, and the total count."""

    @abstractmethod
    def atomic(self) -> AbstractContextManager[None]:
        """All-or-nothing and isolated: other requests see all of a block's writes or none."""


def _matches(task: Task, query: TaskQuery, text: str | None) -> bool:
    if query.statuses and task.status not in query.statuses:
        return False
    if query.priorities and task.priority not in query.priorities:
        return False
    if query.tags and not query.tags.issubset(task.tags):
        return False
    if query.due_after is not None or query.due_before is not None:
        if task.due_date is None:
            return False
        if query.due_after is not None and task.due_date < query.due_after:
            return False
        if query.due_before is not None and task.due_date >= query.due_before:
            return False
    if text is not None:
        haystack = task.title.lower() + "\n" + (task.description or "").lower()
        if text not in haystack:
            return False
    return True


_SORT_VALUE: dict[str, Callable[[Task], Any]] = {
    "title": lambda t: t.title.casefold(),
    "status": lambda t: STATUS_RANK[t.status],
    "priority": lambda t: PRIORITY_RANK[t.priority],
    "due_date": lambda t: t.due_date,
    "created_at": lambda t: t.created_at,
    "updated_at": lambda t: t.updated_at,
}


def sort_tasks(tasks: list[Task], sort: tuple[tuple[str, bool], ...]) -> list[Task]:
    """Stable multi-key sort; missing values (no due date) last either way; id breaks ties."""
    ordered = sorted(tasks, key=lambda t: t.id.int)
    for name, descending in reversed(sort):
        value = _SORT_VALUE[name]
        present = [t for t in ordered if value(t) is not None]
        missing = [t for t in ordered if value(t) is None]
        ordered = sorted(present, key=value, reverse=descending) + missing
    return ordered


@dataclass
class _UnitOfWork:
    depth: int = 0
    undo: list[Callable[[], None]] = field(default_factory=list)


class InMemoryTaskRepository(TaskRepository):
    """A dict guarded by one re-entrant lock; ``atomic`` keeps an undo log to roll back."""

    def __init__(self) -> None:
        self._tasks: dict[uuid.UUID, Task] = {}
        self._lock = threading.RLock()
        self._work = _UnitOfWork()

    @contextmanager
    def atomic(self) -> Iterator[None]:  # type: ignore[override]
        with self._lock:
            work = self._work
            work.depth += 1
            try:
                yield
            except BaseException:
                if work.depth == 1:
                    for undo in reversed(work.undo):
                        undo()
                    work.undo.clear()
                raise
            else:
                if work.depth == 1:
                    work.undo.clear()
            finally:
                work.depth -= 1

    def _remember(self, task_id: uuid.UUID) -> None:
        previous = self._tasks.get(task_id)
        if previous is None:
            self._work.undo.append(lambda: self._tasks.pop(task_id, None))
        else:
            self._work.undo.append(lambda: self._tasks.__setitem__(task_id, previous))

    def get(self, task_id: uuid.UUID) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def add(self, task: Task) -> None:
        with self.atomic():
            if task.id in self._tasks:
                raise KeyError(f"task {task.id} exists")
            self._remember(task.id)
            self._tasks[task.id] = task

    def replace(self, task: Task) -> None:
        with self.atomic():
            if task.id not in self._tasks:
                raise KeyError(f"task {task.id} does not exist")
            self._remember(task.id)
            self._tasks[task.id] = task

    def delete(self, task_id: uuid.UUID) -> None:
        with self.atomic():
            if task_id not in self._tasks:
                raise KeyError(f"task {task_id} does not exist")
            self._remember(task_id)
            del self._tasks[task_id]

    def find(self, query: TaskQuery) -> Page:
        text = query.text.lower() if query.text else None
        with self._lock:
            matching = [t for t in self._tasks.values() if _matches(t, query, text)]
        ordered = sort_tasks(matching, query.sort)
        start = (query.page - 1) * query.per_page
        return Page(
            ordered[start : start + query.per_page], query.page, query.per_page, len(matching)
        )
