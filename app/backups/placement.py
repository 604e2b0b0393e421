"""Backing up and restoring a database set whose workspaces move between shards.

A backup copies the databases one after the other: the control database (the directory) first,
then each shard. Each copy is one consistent snapshot; the set is not one instant. A workspace's
rows all live in one database, so each workspace comes back consistent in itself, *provided* the
directory's copy names the shard whose copy holds them. Two things threaten that.

**A move switching while the databases are copied.** The directory's copy says S; by the time S
was copied, the move had switched the workspace to T and cleaned it off S: restored, the
workspace would be empty, its rows unreachable on T. ``switch_count`` counts the switches: each
records a ``workspace.moved`` event in the control database's append-only audit log, in the
switch's own transaction. The backup reads it before the first copy and after the last and, if
it changed, copies everything again (``BackupService``, a 409 after ``COPY_ATTEMPTS``). With no
switch in between, the shard the directory's copy names holds the workspace's rows in its own
copy, whole: nothing but a switch (a move's cleanup) takes a workspace's rows off the shard the
directory names, apart from deleting the workspace (below).

**A move or a delete in progress when the directory was copied**: its entry is ``moving`` or
``deleting``. Restored as it is, it would stay so forever (no move or delete runs after a restore
to finish it), and every write to it would answer 503. ``settle_after_restore`` ends each one once
every database is restored:

- ``moving``: the move is called off, as ``flask move-workspace <id> <its shard> --force`` calls
  off a crashed one. The entry names the shard that held the complete data when the directory was
  copied: before the switch the source (writes to it were blocked since the flip, and a source is
  only cleaned up after a switch), after the switch the target (its copy was committed and
  verified before the switch). No switch happened during the backup, so that shard's copy holds
  the workspace whole: it becomes ``active`` there, and whatever of it another shard's copy holds
  (the target's copy before the switch, the source's rows not yet cleaned up after it) is
  removed: never served, and nothing is lost.
- ``deleting`` (its tasks being removed, then its entry): it comes back ``active`` with whatever
  tasks its shard's copy holds (all, or none if the shard was copied after the delete removed
  them), exactly as a delete that fails part way leaves it; deleting it again finishes the job.
  Its state is part of what the user saw, so its version changes (a new ETag).

Defensive: a ``moving`` entry whose shard's copy holds none of its rows while another shard's
copy does (only a backup taken by code without the switch check could hold that) is left alone
and reported, since calling the move off would delete the only copy.

What a backup still does not make one instant: a workspace created while it ran may be missing
(its rows, if any, are unreachable: no entry leads to them), and one deleted while it ran may come
back, possibly without its tasks.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.engine import Engine

from app.audit.models import AuditEventRow
from app.db.shards import ShardRegistry
from app.workspaces.models import WorkspaceRow, WorkspaceState
from app.workspaces.moves import move_workspace, shard_tables

logger = logging.getLogger(__name__)

MOVED = "workspace.moved"  # what a move's switch records (app.workspaces.moves._set_entry)
_DIRECTORY = WorkspaceRow.__table__


def switch_count(control: Engine) -> int:
    """How many times a workspace has switched shards, as the control database's audit log says."""
    with control.connect() as connection:
        count = connection.scalar(
            select(func.count()).select_from(AuditEventRow).where(AuditEventRow.action == MOVED)
        )
    return int(count or 0)


def settle_after_restore(registry: ShardRegistry) -> dict[str, list[str]]:
    """End every move and delete the restored directory has in progress (see the module
    docstring); what was done, by workspace id: ``moves_called_off``, ``deletes_called_off``, and
    ``unsettled`` for those left as they were (logged as errors)."""
    with registry.control.connect() as connection:
        entries = connection.execute(
            select(_DIRECTORY.c.id, _DIRECTORY.c.shard, _DIRECTORY.c.state)
            .where(_DIRECTORY.c.state != WorkspaceState.ACTIVE.value)
            .order_by(_DIRECTORY.c.id)
        ).all()
    done: dict[str, list[str]] = {"moves_called_off": [], "deletes_called_off": [], "unsettled": []}
    for entry in entries:
        try:
            if entry.state == WorkspaceState.DELETING.value:
                _reactivate(registry.control, entry.id)
                done["deletes_called_off"].append(str(entry.id))
                continue
            problem = _why_not_call_off(registry, entry)
            if problem is None:
                move_workspace(entry.id, entry.shard, force=True, registry=registry)
                done["moves_called_off"].append(str(entry.id))
                continue
            logger.error(
                "After the restore, workspace %s stays %s: %s", entry.id, entry.state, problem
            )
        except Exception:
            logger.exception("After the restore, workspace %s stays %s", entry.id, entry.state)
        done["unsettled"].append(str(entry.id))
    for key, ids in done.items():
        if ids:
            logger.info("After the restore, %s: %s", key.replace("_", " "), ", ".join(ids))
    return {key: ids for key, ids in done.items() if ids}


def _reactivate(control: Engine, workspace_id: uuid.UUID) -> None:
    with control.connect() as connection:
        connection.execution_options(write_transaction=True)  # SQLite: BEGIN IMMEDIATE
        with connection.begin():
            connection.execute(
                update(_DIRECTORY)
                .where(
                    _DIRECTORY.c.id == workspace_id,
                    _DIRECTORY.c.state == WorkspaceState.DELETING.value,
                )
                .values(state=WorkspaceState.ACTIVE.value, version=_DIRECTORY.c.version + 1)
            )


def _why_not_call_off(registry: ShardRegistry, entry: Any) -> str | None:
    """None if calling the move off keeps the workspace's rows: its shard holds some of them, or
    no shard does (an empty workspace). Else why not."""
    if entry.state != WorkspaceState.MOVING.value:
        return f"{entry.state!r} is not a state a restore knows how to end"
    if entry.shard not in registry.names:
        return f"its shard {entry.shard!r} is not configured"
    holding = [name for name in registry.names if _has_rows(registry.engine(name), entry.id)]
    if holding and entry.shard not in holding:
        return f"its rows are on {', '.join(holding)}, not on {entry.shard}; move it there"
    return None


def _has_rows(engine: Engine, workspace_id: uuid.UUID) -> bool:
    with engine.connect() as connection:
        return any(
            connection.scalar(select(exists().where(table.c.workspace_id == workspace_id)))
            for table in shard_tables()
        )
