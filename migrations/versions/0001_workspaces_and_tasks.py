"""Workspaces and tasks (chapter 3): the workspace directory, tasks with their tags, and the
default workspace that API v1 serves.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from flask import current_app

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

DEFAULT_WORKSPACE_ID = uuid.UUID("01a19b7b-0000-7000-8000-000000000001")
CREATED = datetime(2026, 11, 26, tzinfo=UTC)


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("shard", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
    )
    with op.batch_alter_table("workspaces") as batch_op:
        batch_op.create_index(batch_op.f("ix_workspaces_created_at_id"), ["created_at", "id"])
        batch_op.create_index(batch_op.f("ix_workspaces_shard"), ["shard"])

    op.create_table(
        "tasks",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("priority", sa.String(length=20), nullable=False),
        sa.Column("due_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id", name=op.f("pk_tasks")),
    )
    with op.batch_alter_table("tasks") as batch_op:
        for columns in (
            ["workspace_id", "created_at", "id"],
            ["workspace_id", "due_date"],
            ["workspace_id", "status", "created_at"],
            ["workspace_id", "updated_at"],
        ):
            batch_op.create_index(batch_op.f(f"ix_tasks_{'_'.join(columns)}"), columns)

    op.create_table(
        "task_tags",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(length=50), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id", "task_id"],
            ["tasks.workspace_id", "tasks.id"],
            name=op.f("fk_task_tags_workspace_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "task_id", "tag", name=op.f("pk_task_tags")),
    )
    with op.batch_alter_table("task_tags") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_task_tags_workspace_id_tag_task_id"), ["workspace_id", "tag", "task_id"]
        )

    if op.get_context().config.attributes.get("database_role") == "control":
        _add_default_workspace()


def _add_default_workspace() -> None:
    """Data: API v1 clients find their tasks in this workspace (on the first shard)."""
    created = CREATED
    if op.get_bind().dialect.name == "sqlite":  # SQLite keeps no zone: naive UTC, as the models
        created = created.replace(tzinfo=None)
    workspaces = sa.table(
        "workspaces",
        sa.column("id", sa.Uuid()),
        sa.column("name", sa.String()),
        sa.column("shard", sa.String()),
        sa.column("state", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("version", sa.Integer()),
    )
    op.bulk_insert(
        workspaces,
        [
            {
                "id": DEFAULT_WORKSPACE_ID,
                "name": "Default workspace",
                "shard": current_app.extensions["shards"].names[0],
                "state": "active",
                "created_at": created,
                "updated_at": created,
                "version": 1,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("task_tags")
    op.drop_table("tasks")
    op.drop_table("workspaces")
