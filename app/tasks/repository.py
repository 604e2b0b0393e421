"""Task storage behind an interface: the service never knows where tasks live.

``SqlAlchemyTaskRepository`` keeps them in a shard database (chapter 3); the in-memory one stays
for the service's unit tests.
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
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, bindparam, case, delete, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from app.db.shards import outside_transaction
from app.tasks.models import PRIORITY_RANK, STATUS_RANK, Priority, Status, Task, TaskRow, TaskTagRow

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


class TaskStamp(NamedTuple):
    version: int
    updated_at: datetime


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

    def stamp(self, task_id: uuid.UUID) -> TaskStamp | None:
        """The task's (version, updated_at), which its ETag derives from. Storage that can read
        them without the whole task (SQL: one indexed row, no tags) should override this."""
        task = self.get(task_id)
        return None if task is None else TaskStamp(task.version, task.updated_at)

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


# --- SQL ---------------------------------------------------------------------------------------

# Called inside a write's transaction with (session, workspace id, before, after): before is None
# for a create, after None for a delete. The audit log (chapter 3) records each change this way.
ChangeListener = Callable[[Session, uuid.UUID, Task | None, Task | None], None]

_RANKED: dict[str, dict[str, int]] = {
    "status": {status.value: rank for status, rank in STATUS_RANK.items()},
    "priority": {priority.value: rank for priority, rank in PRIORITY_RANK.items()},
}


def _sort_key(name: str, columns: Any) -> ColumnElement[Any]:
    if name in _RANKED:
        return case(_RANKED[name], value=columns[name])
    if name == "title":
        return func.lower(columns.title)
    return columns[name]


def _ordering(query: TaskQuery, columns: Any) -> list[ColumnElement[Any]]:
    """ORDER BY terms on ``columns`` (the tasks table's, or a subquery's), the id last to break
    ties; missing values last. NULLS LAST only where a column can be NULL: on a NOT NULL column
    it changes nothing but stops PostgreSQL from reading the index backwards for a descending
    sort (it would sort the whole workspace for each page instead)."""
    terms = []
    for name, descending in query.sort:
        key = _sort_key(name, columns)
        ordered = key.desc() if descending else key.asc()
        terms.append(ordered.nulls_last() if TaskRow.__table__.c[name].nullable else ordered)
    return [*terms, columns.id]


def task_from_row(row: Any, tags: tuple[str, ...] | None = None) -> Task:
    """A Task from a TaskRow (its tags loaded), or from a plain row of the tasks table and its
    tags."""
    return Task(
        id=row.id,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        description=row.description,
        status=Status(row.status),
        priority=Priority(row.priority),
        due_date=row.due_date,
        tags=tuple(tag.tag for tag in row.tags) if tags is None else tags,
        version=row.version,
    )


_TASKS = TaskRow.__table__
_TAGS = TaskTagRow.__table__


def _tags_array(tasks: Any) -> ColumnElement[Any]:
    """PostgreSQL: each task's tags, in the client's order, as an array column of the task's own
    row (``tasks``: the tasks table or a subquery of it). A read then costs one round trip instead
    of two. SQLite, in process, where a statement costs no round trip, reads the tags with a
    second statement (``_tags_of``)."""
    return func.array(
        select(_TAGS.c.tag)
        .where(_TAGS.c.workspace_id == tasks.c.workspace_id, _TAGS.c.task_id == tasks.c.id)
        .order_by(_TAGS.c.position)
        .correlate(tasks)
        .scalar_subquery()
    ).label("tag_list")


def _one_round_trip(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# The statements of the hottest reads, built once: building a SELECT per request cost more than
# executing it. Every one is scoped by the ``workspace_id`` parameter.
_ONE_TASK = (
    _TASKS.c.id == bindparam("task_id"),
    _TASKS.c.workspace_id == bindparam("workspace_id"),
)
_TASK = select(_TASKS).where(*_ONE_TASK)
_TASK_WITH_TAGS = select(_TASKS, _tags_array(_TASKS)).where(*_ONE_TASK)
_STAMP = select(_TASKS.c.version, _TASKS.c.updated_at).where(*_ONE_TASK)


class SqlAlchemyTaskRepository(TaskRepository):
    """The tasks of one workspace, in its shard's database.

    The workspace is fixed when the repository is made, and every statement below filters on it:
    tenant isolation lives here, not in each route. Writes run in ``atomic()``: one transaction at
    the outermost level, a savepoint inside it (a bulk operation that fails rolls back to its own
    savepoint, and the transaction stays usable on PostgreSQL). Inside a unit of work, ``get``
    locks the row (``SELECT ... FOR UPDATE``), so a precondition and the write it guards see the
    same version even with parallel connections.
    """

    def __init__(
        self,
        session: Session,
        workspace_id: uuid.UUID,
        *,
        read_session: Session | None = None,
        on_change: ChangeListener | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.session = session  # the shard's primary: every write, and reads inside atomic()
        self.read_session = read_session or session  # reads outside a unit of work (a replica)
        self.workspace_id = workspace_id
        self.on_change = on_change
        self.on_commit = on_commit  # told after a unit of work commits (read-your-writes)
        self._depth = 0

    @contextmanager
    def atomic(self) -> Iterator[None]:  # type: ignore[override]
        session = self.session
        if self._depth == 0:
            if session.in_transaction():
                session.rollback()  # end a read-only transaction begun by an earlier read
            transaction = session.begin()
            # SQLite: take the write lock now (BEGIN IMMEDIATE), not halfway through.
            session.connection(execution_options={"write_transaction": True})
        else:
            transaction = session.begin_nested()
        self._depth += 1
        try:
            with transaction:
                yield
        finally:
            self._depth -= 1
        if self._depth == 0:
            self.read_session = self.session  # this repository wrote: read it back from there
            if self.on_commit is not None:
                self.on_commit()

    def _row(self, task_id: uuid.UUID) -> TaskRow | None:
        statement = (
            select(TaskRow)
            .where(TaskRow.id == task_id, TaskRow.workspace_id == self.workspace_id)
            .options(selectinload(TaskRow.tags))
        )
        if self._depth:  # a write is coming: the primary, and the row locked
            return self.session.scalars(statement.with_for_update()).one_or_none()
        return self.read_session.scalars(statement).one_or_none()

    def _changed(self, before: Task | None, after: Task | None) -> None:
        """Tell the listener (the audit log) inside the write's own transaction."""
        if self.on_change is not None:
            self.on_change(self.session, self.workspace_id, before, after)

    def get(self, task_id: uuid.UUID) -> Task | None:
        if self._depth:  # a write is coming: the locked ORM row it will change
            locked = self._row(task_id)
            return None if locked is None else task_from_row(locked)
        # A plain read: a plain row and its tags, no ORM objects to build and track.
        session = outside_transaction(self.read_session)
        inline_tags = _one_round_trip(session)
        row = session.execute(
            _TASK_WITH_TAGS if inline_tags else _TASK,
            {"task_id": task_id, "workspace_id": self.workspace_id},
        ).one_or_none()
        if row is None:
            return None
        tags = tuple(row.tag_list) if inline_tags else self._tags_of(session, [row.id])[row.id]
        return task_from_row(row, tags)

    def stamp(self, task_id: uuid.UUID) -> TaskStamp | None:
        """Two columns of one row by primary key: what a conditional GET needs (no tags)."""
        session = self.session if self._depth else outside_transaction(self.read_session)
        found = session.execute(
            _STAMP, {"task_id": task_id, "workspace_id": self.workspace_id}
        ).one_or_none()
        return None if found is None else TaskStamp(found.version, found.updated_at)

    def add(self, task: Task) -> None:
        with self.atomic():
            row = TaskRow(id=task.id, workspace_id=self.workspace_id, version=task.version, tags=[])
            self._copy(task, row)
            self.session.add(row)
            self.session.flush()
            self._changed(None, task)

    def replace(self, task: Task) -> None:
        with self.atomic():
            row = self._row(task.id)
            if row is None:
                raise KeyError(f"task {task.id} does not exist")
            before = task_from_row(row)
            self._copy(task, row)
            row.version += 1
            self.session.flush()
            self._changed(before, task)

    def delete(self, task_id: uuid.UUID) -> None:
        with self.atomic():
            row = self._row(task_id)
            if row is None:
                raise KeyError(f"task {task_id} does not exist")
            before = task_from_row(row)
            scope = (TaskRow.id == task_id, TaskRow.workspace_id == self.workspace_id)
            self.session.execute(
                delete(TaskTagRow).where(
                    TaskTagRow.task_id == task_id, TaskTagRow.workspace_id == self.workspace_id
                )
            )
            self.session.execute(delete(TaskRow).where(*scope))
            self.session.expire_all()
            self._changed(before, None)

    def _copy(self, task: Task, row: TaskRow) -> None:
        row.title = task.title
        row.description = task.description
        row.status = task.status.value
        row.priority = task.priority.value
        row.due_date = task.due_date
        row.created_at = task.created_at
        row.updated_at = task.updated_at
        # Change tags in place: removing and re-adding the same (task, tag) key in one flush
        # would insert before deleting.
        wanted = {tag: position for position, tag in enumerate(task.tags)}
        for tag_row in list(row.tags):
            if tag_row.tag not in wanted:
                row.tags.remove(tag_row)
            else:
                tag_row.position = wanted.pop(tag_row.tag)
        for tag, position in wanted.items():
            row.tags.append(TaskTagRow(tag=tag, position=position, workspace_id=self.workspace_id))
        row.tags.sort(key=lambda tag_row: tag_row.position)

    def find(self, query: TaskQuery) -> Page:
        """One statement whatever the page size on PostgreSQL (the page with its total and each
        task's tags), two on SQLite (the tags apart); one more when the page is empty."""
        conditions: list[ColumnElement[bool]] = [TaskRow.workspace_id == self.workspace_id]
        if query.statuses:
            conditions.append(TaskRow.status.in_(sorted(s.value for s in query.statuses)))
        if query.priorities:
            conditions.append(TaskRow.priority.in_(sorted(p.value for p in query.priorities)))
        for tag in sorted(query.tags):
            conditions.append(
                exists().where(
                    TaskTagRow.workspace_id == self.workspace_id,
                    TaskTagRow.tag == tag,
                    TaskTagRow.task_id == TaskRow.id,
                )
            )
        if query.due_after is not None:
            conditions.append(TaskRow.due_date >= query.due_after)
        if query.due_before is not None:
            conditions.append(TaskRow.due_date < query.due_before)
        if query.text:
            text = query.text.lower()
            conditions.append(
                or_(
                    func.lower(TaskRow.title).contains(text, autoescape=True),
                    func.lower(func.coalesce(TaskRow.description, "")).contains(
                        text, autoescape=True
                    ),
                )
            )
        session = self.session if self._depth else outside_transaction(self.read_session)
        inline_tags = _one_round_trip(session)
        # The total rides along with the page: an uncorrelated subquery, computed once.
        total = select(func.count()).select_from(_TASKS).where(*conditions).scalar_subquery()
        # Plain rows, not ORM objects: a page is only read, and building (and tracking) an
        # object per task and per tag cost more than the rest of the request.
        page = (
            select(_TASKS, total.label("total"))
            .where(*conditions)
            .order_by(*_ordering(query, _TASKS.c))
            .limit(query.per_page)
            .offset((query.page - 1) * query.per_page)
        )
        if inline_tags:
            # Tags for the page's rows only: put in the page's own SELECT list, PostgreSQL would
            # also read them for every row an OFFSET skips.
            paged = page.subquery("page")
            page = select(paged, _tags_array(paged)).order_by(*_ordering(query, paged.c))
        rows = session.execute(page).all()
        if not rows:  # an empty page carries no total: past the last page, or nothing matches
            return Page([], query.page, query.per_page, session.scalar(select(total)) or 0)
        if inline_tags:
            tags = {row.id: tuple(row.tag_list) for row in rows}
        else:
            tags = self._tags_of(session, [row.id for row in rows])
        items = [task_from_row(row, tags[row.id]) for row in rows]
        return Page(items, query.page, query.per_page, rows[0].total)

    def _tags_of(
        self, session: Session, task_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[str, ...]]:
        """Each task's tags, in the client's order: one statement for all of them."""
        found: dict[uuid.UUID, list[str]] = {task_id: [] for task_id in task_ids}
        if task_ids:
            for task_id, tag in session.execute(
                select(TaskTagRow.task_id, TaskTagRow.tag)
                .where(TaskTagRow.workspace_id == self.workspace_id)
                .where(TaskTagRow.task_id.in_(task_ids))
                .order_by(TaskTagRow.task_id, TaskTagRow.position)
            ):
                found[task_id].append(tag)
        return {task_id: tuple(tags) for task_id, tags in found.items()}
