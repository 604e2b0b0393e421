"""Workspaces, the tenants: every task belongs to exactly one. The directory of workspaces lives in
the control database and says which shard holds each workspace's data."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UtcDateTime

# The workspace that API v1 (which has no workspaces in its URLs) reads and writes. Created by the
# first migration, so v1 clients keep working on an upgraded database.
DEFAULT_WORKSPACE_ID = uuid.UUID("01a19b7b-0000-7000-8000-000000000001")
DEFAULT_WORKSPACE_NAME = "Default workspace"


class WorkspaceState(StrEnum):
    ACTIVE = "active"
    MOVING = "moving"  # its data is being copied to another shard: writes wait (503)
    DELETING = "deleting"  # its tasks are being removed: writes wait (503), then it is gone


@dataclass(frozen=True, slots=True)
class Workspace:
    id: uuid.UUID
    name: str
    shard: str
    state: WorkspaceState
    created_at: datetime
    updated_at: datetime
    version: int


class WorkspaceRow(Base):
    __tablename__ = "workspaces"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    shard: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default=WorkspaceState.ACTIVE.value)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (Index(None, "created_at", "id"), Index(None, "shard"))

    def to_domain(self) -> Workspace:
        return workspace_from_row(self)


def workspace_from_row(row: Any) -> Workspace:
    """The domain value of a directory entry: an ORM ``WorkspaceRow`` or a plain row."""
    return Workspace(
        id=row.id,
        name=row.name,
        shard=row.shard,
        state=WorkspaceState(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
    )
