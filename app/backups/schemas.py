"""The backup and workspace-archive wire formats: Swagger models and JSON shapes."""

from __future__ import annotations

from typing import Any

from flask_restx import Model, fields

from app.backups.service import Backup, RestoreResult, copy_to_dict
from app.backups.workspace_archive import ImportResult
from app.tasks.schemas import NullableString, iso_utc
from app.workspaces.schemas import workspace, workspace_to_dict

EXAMPLE_BACKUP_ID = "019a6f3e-5c1d-7b2a-9e4f-3a2b1c0d9e8f"
EXAMPLE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

database_copy = Model(
    "BackupDatabase",
    {
        "key": fields.String(description="control, or shard:<name>", example="shard:shard-1"),
        "engine": fields.String(enum=["sqlite", "postgresql"], example="postgresql"),
        "file": fields.String(description="Its file inside the archive", example="shard-1.pgdump"),
        "size": fields.Integer(example=48213),
        "sha256": fields.String(example=EXAMPLE_SHA256),
        "alembic_revision": NullableString(example="0001"),
    },
)

backup = Model(
    "Backup",
    {
        "id": fields.String(description="UUIDv7", example=EXAMPLE_BACKUP_ID),
        "created_at": fields.String(example="2026-11-26T10:00:00.000Z"),
        "size": fields.Integer(description="Bytes of the archive (a tar)", example=104857),
        "sha256": fields.String(description="SHA-256 of the archive, hex", example=EXAMPLE_SHA256),
        "engine": fields.String(enum=["sqlite", "postgresql", "mixed"], example="postgresql"),
        "reason": fields.String(
            enum=["requested", "pre-restore"],
            description="pre-restore: taken automatically just before a restore",
            example="requested",
        ),
        "format_version": fields.Integer(example=1),
        "app_version": fields.String(example="0.4.0"),
        "alembic_revision": NullableString(description="Schema revision", example="0001"),
        "shards": fields.List(fields.String, example=["shard-1", "shard-2"]),
        "databases": fields.List(fields.Nested(database_copy)),
    },
)

backup_list = Model("BackupList", {"items": fields.List(fields.Nested(backup))})

restore_result = Model(
    "RestoreResult",
    {
        "restored": fields.Nested(backup, description="The backup now in the databases"),
        "safety_backup": fields.Nested(
            backup, description="The data as it was just before; restore it to undo"
        ),
    },
)

import_result = Model(
    "WorkspaceImport",
    {
        "workspace": fields.Nested(workspace, description="The new workspace"),
        "tasks": fields.Integer(description="Tasks imported (with new ids)", example=42),
        "source_workspace_id": fields.String(description="The exported workspace's id"),
        "exported_at": fields.String(example="2026-11-26T10:00:00.000Z"),
    },
)

MODELS = (database_copy, backup, backup_list, restore_result, import_result)


def backup_to_dict(item: Backup) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "created_at": iso_utc(item.created_at),
        "size": item.size,
        "sha256": item.sha256,
        "engine": item.engine,
        "reason": item.reason,
        "format_version": item.format_version,
        "app_version": item.app_version,
        "alembic_revision": item.alembic_revision,
        "shards": list(item.shards),
        "databases": [copy_to_dict(copy) for copy in item.databases],
    }


def restore_to_dict(result: RestoreResult) -> dict[str, Any]:
    return {
        "restored": backup_to_dict(result.restored),
        "safety_backup": backup_to_dict(result.safety_backup),
    }


def import_to_dict(result: ImportResult) -> dict[str, Any]:
    return {
        "workspace": workspace_to_dict(result.workspace),
        "tasks": result.tasks,
        "source_workspace_id": str(result.source_workspace_id),
        "exported_at": iso_utc(result.exported_at),
    }
