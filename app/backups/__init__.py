"""Backups of the whole database set, and per-workspace export/import (admin only).

``backup_service()`` builds the service from the app's settings; a job (chapter 6) can build it
the same way inside an app context, or construct ``BackupService`` directly (then with the
``placement`` and ``settle`` of ``app.backups.placement``, as here: without them a backup may race
a workspace move, and a restore may leave a workspace moving or deleting for good).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from flask import Flask, current_app
from sqlalchemy.orm import Session

from app.audit.service import record_event
from app.auth.service import end_every_session
from app.backups.placement import settle_after_restore, switch_count
from app.backups.service import Backup, BackupService, database_key
from app.db import db
from app.db.setup import MIGRATIONS_DIRECTORY
from app.db.shards import ShardRegistry
from app.version import __version__


@lru_cache(maxsize=1)
def alembic_head() -> str | None:
    """The newest revision the code knows: a restored database must be exactly there."""
    return ScriptDirectory(MIGRATIONS_DIRECTORY).get_current_head()


def backup_directory(app: Flask) -> Path:
    configured = app.config.get("BACKUP_DIR")
    return Path(configured) if configured else Path(app.instance_path) / "backups"


def record_admin_event(
    session: Session,
    action: str,
    entity_type: str,
    entity_id: str | uuid.UUID,
    *,
    workspace_id: uuid.UUID | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Audit an admin action with ``session`` (the control database's), in a transaction of its
    own: the action itself (a file written, a restore) is not a transaction of that database."""
    if session.in_transaction():
        session.rollback()  # end a read (SQLite: its shared lock would block our commit)
    with session.begin():
        session.connection(execution_options={"write_transaction": True})  # SQLite: IMMEDIATE
        record_event(
            session,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            workspace_id=workspace_id,
            before=before,
            after=after,
        )


def _backup_summary(backup: Backup) -> dict[str, Any]:
    return {
        "reason": backup.reason,
        "size": backup.size,
        "sha256": backup.sha256,
        "engine": backup.engine,
        "created_at": backup.created_at,
    }


def backup_service(app: Flask | None = None) -> BackupService:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    registry: ShardRegistry = app.extensions["shards"]
    # The control database first, then the shards by name (as the migrations run).
    found = registry.all_engines()
    databases = {database_key(None): found.pop(None)}
    databases |= {database_key(name): found[name] for name in sorted(found, key=str)}

    def audit(action: str, backup: Backup, details: Mapping[str, Any]) -> None:
        summary = {**_backup_summary(backup), **details}
        removed = action == "backup.deleted"
        record_admin_event(
            db.session(),
            action,
            "backup",
            backup.id,
            before=summary if removed else None,
            after=None if removed else summary,
        )

    return BackupService(
        backup_directory(app),
        databases,
        shards=registry.names,
        head=alembic_head(),
        keep=int(app.config["BACKUP_KEEP"]),
        app_version=__version__,
        on_event=audit,
        # One shard: no workspace can change shard, and nothing need be counted.
        placement=partial(switch_count, registry.control) if len(registry.names) > 1 else None,
        settle=partial(_settle_after_restore, registry),
    )


def _settle_after_restore(registry: ShardRegistry) -> dict[str, Any]:
    """What a restore leaves to finish: half-done moves and deletes, and every session (the
    restored tables would revive sessions ended since the backup was taken)."""
    settled: dict[str, Any] = dict(settle_after_restore(registry))
    settled["sessions_ended"] = end_every_session(registry.control, "restore")
    return settled
