"""The Task domain model: plain, immutable values; storage and HTTP live elsewhere."""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import ForeignKeyConstraint, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, UtcDateTime


class Status(StrEnum):
    """Lifecycle: todo -> in_progress -> done, with blocked and cancelled on the side."""

    TODO = "todo"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    DONE = "done"
    CANCELLED = "cancelled"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


# Allowed status changes. Closed tasks (done, cancelled) can only be reopened to todo.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.TODO: frozenset({Status.IN_PROGRESS, Status.BLOCKED, Status.DONE, Status.CANCELLED}),
    Status.IN_PROGRESS: frozenset({Status.TODO, Status.BLOCKED, Status.DONE, Status.CANCELLED}),
    Status.BLOCKED: frozenset({Status.TODO, Status.IN_PROGRESS, Status.CANCELLED}),
    Status.DONE: frozenset({Status.TODO}),
    Status.CANCELLED: frozenset({Status.TODO}),
}

# Sort ranks: status follows the lifecycle, priority its urgency (not the alphabet).
STATUS_RANK = {status: rank for rank, status in enumerate(Status)}
PRIORITY_RANK = {priority: rank for rank, priority in enumerate(Priority)}


def can_transition(current: Status, new: Status) -> bool:
    return current == new or new in TRANSITIONS[current]


def utc_now() -> datetime:
    """Now, in UTC, at millisecond precision (what the API shows and what round-trips exactly)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


_RANDOM_BITS = 74  # a UUIDv7 has 128 bits: 48 of time, 6 of version and variant, 74 random


def _compose_uuid7(ms: int, random74: int) -> uuid.UUID:
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76  # time, then version 7
    value |= (random74 >> 62) << 64 | 0x2 << 62 | random74 & (2**62 - 1)  # rand_a, variant, rand_b
    return uuid.UUID(int=value)


class _MonotonicUuid7:
    """RFC 9562 section 6.2, "monotonic random": within one millisecond each id is the previous
    one plus one, so ids made by this process sort in creation order (a random tail alone would
    not), while staying unpredictable across milliseconds. Process-wide, like the clock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def __call__(self) -> uuid.UUID:
        with self._lock:
            ms = int(time.time() * 1000)
            if ms > self._last_ms:
                random74 = int.from_bytes(os.urandom(10), "big") >> (80 - _RANDOM_BITS)
                random74 &= ~(1 << (_RANDOM_BITS - 1))  # top bit clear: room to count up
            else:
                ms, random74 = self._last_ms, self._last_random + 1
                if random74 >= 2**_RANDOM_BITS:  # 2**73 ids in one millisecond: borrow the next
                    ms, random74 = ms + 1, 0
            self._last_ms, self._last_random = ms, random74
            return _compose_uuid7(ms, random74)


_next_uuid7 = _MonotonicUuid7()


def new_task_id(timestamp_ms: int | None = None, random_bytes: bytes | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.

    Unique without coordination (creatable anywhere, in bulk, on any shard), not guessable from
    other ids, and time-ordered, which keeps database indexes compact (chapter 3). With explicit
    ``timestamp_ms`` and ``random_bytes`` (deterministic seeding) the result is fully determined.
    """
    if timestamp_ms is None and random_bytes is None:
        return _next_uuid7()
    ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    rand = int.from_bytes(random_bytes if random_bytes is not None else os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80 | rand & (2**80 - 1)
    value = value & ~(0xF << 76) | (0x7 << 76)  # version 7
    value = value & ~(0x3 << 62) | (0x2 << 62)  # RFC 9562 variant
    return uuid.UUID(int=value)


@dataclass(frozen=True, slots=True)
class Task:
    id: uuid.UUID
    title: str
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    status: Status = Status.TODO
    priority: Priority = Priority.MEDIUM
    due_date: datetime | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Bumped by every write (the service sets it, the repository stores it): optimistic locking,
    # and with updated_at what the ETag derives from, so a 304 needs no body.
    version: int = 1


# --- Tables ------------------------------------------------------------------------------------
# The rows behind Task, in a shard database. Every row carries its workspace: the repository
# filters on it in every statement, and every index starts with it.


class TaskRow(Base):
    __tablename__ = "tasks"

    # The workspace leads the primary key: every statement the ORM writes for a row (UPDATE,
    # DELETE by key) names its workspace too, and rows of one workspace sit together in the index.
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[str] = mapped_column(String(20))
    due_date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Bumped by every write: optimistic locking, and a cheap change marker.
    version: Mapped[int] = mapped_column(Integer, default=1)

    tags: Mapped[list[TaskTagRow]] = relationship(
        cascade="all, delete-orphan", order_by="TaskTagRow.position", lazy="raise"
    )

    __table_args__ = (
        Index(None, "workspace_id", "created_at", "id"),
        Index(None, "workspace_id", "status", "created_at"),
        Index(None, "workspace_id", "due_date"),
        Index(None, "workspace_id", "updated_at"),
    )


class TaskTagRow(Base):
    __tablename__ = "task_tags"

    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tag: Mapped[str] = mapped_column(String(50), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # the order the client gave

    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "task_id"], ["tasks.workspace_id", "tasks.id"], ondelete="CASCADE"
        ),
        Index(None, "workspace_id", "tag", "task_id"),  # the tag filter
    )
