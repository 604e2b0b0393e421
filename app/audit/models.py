"""The audit log's table. Every database has it (one schema everywhere): task events live in the
shard that holds the task, workspace events in the control database, each in the same
transaction as the write they describe.

Append-only: a trigger (see the migration) refuses UPDATE and DELETE on every engine, so even the
application cannot rewrite history. Deleting a workspace removes its tasks, never its events.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UtcDateTime

GENESIS_HASH = "0" * 64  # the prev_hash of a chain's first event


class AuditEventRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # UUIDv7: time-ordered
    # None for events about no workspace (backups, restores): they form their own chain.
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # Position in its chain: the events of one workspace in one database, 1, 2, 3...
    sequence: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(50))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(128))
    client_ip: Mapped[str | None] = mapped_column(String(45))  # an IPv6 address at most
    # field -> {"before": ..., "after": ...}: JSON values only, so the hash recomputes exactly.
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        # One event per position: a second writer that missed the lock could not fork the chain.
        Index(None, "workspace_id", "sequence", unique=True),
        Index(None, "workspace_id", "entity_type", "entity_id", "sequence"),  # a task's history
        Index(None, "workspace_id", "id"),  # newest first, cursor pagination
    )
