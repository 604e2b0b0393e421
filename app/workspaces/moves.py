"""Moving a workspace to another shard, and keeping its writes out while it moves.

``move_workspace`` (and ``flask move-workspace``) runs these steps; the directory entry in the
control database is the single source of truth throughout:

1. **Flip**: the directory entry goes from ``active`` to ``moving`` (a compare-and-set, committed),
   so every worker sees it. It is also the mutex between moves: a second move of the same
   workspace is refused while one runs.
2. **Drain**: take the workspace's write lock on the source shard once, which waits for the
   writes already in flight there, then let go.
3. **Copy** every shard-resident table (every table with a ``workspace_id`` column: tasks,
   task_tags and whatever later chapters add, such as the audit log) in batches, inside **one**
   transaction on the target; rows keep their ids, so ordering and hash chains survive.
4. **Verify**, still inside that transaction: per table, the row count and a SHA-256 over the
   canonical rows in primary-key order, read independently on both sides, must match.
   Then commit the target.
5. **Switch** the directory entry to the target (still ``moving``), then **clean up**: remove the
   workspace's rows from every other shard, and set the entry ``active``.

Failure before the switch: the target transaction rolls back (or its committed copy is deleted
again) and the entry goes back to ``active`` on the source, which nobody wrote to: nothing is
lost or duplicated. Failure after the switch: the data is on the target and the directory says
so; rows left on the source are unreachable (every query routes through the directory) and the
next run of the command removes them. A crash (the process killed) leaves the entry ``moving``;
``--force`` takes such a move over (see ``move_workspace``).

**Why writers cannot slip a row past the copy.** The directory and the shard are different
databases, so "check the state, then write" is a race: a writer that read ``active`` just before
the flip could commit to the source after the copy read it, and the row would be lost. The rule
that closes it: *a writer takes the workspace's write lock on its shard first, and only then reads
the directory* (``guard_write``), and the mover takes that same lock after the flip (the drain).
Each writer either got the lock before the drain, so the drain waits for its commit and the copy
sees its row, or after, so it reads ``moving`` (the flip committed before the drain) and answers
503. The lock is ``BEGIN IMMEDIATE`` on SQLite (one writer per database file) and a
transaction-scoped advisory lock on PostgreSQL: shared for writers, so they still run in parallel,
exclusive for the drain. The directory read runs in a fresh transaction, never an older snapshot.
A writer also checks that the directory still names *its* shard: a move that completed since it
looked the workspace up would otherwise receive a write on the old shard.

SQLite has one lock per file, so a request must not hold the control file while it waits for a
shard's write lock (a move waiting to commit the flip would wait for it in turn): ``task_service``
and workspace delete end their directory read before taking the shard lock. SQLite also means
the copy holds the source file's read lock and the target file's write lock while it runs, so
other workspaces' writes on those two files wait meanwhile (up to the busy timeout): fine at the
embedded default's sizes; on PostgreSQL nothing else waits.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import click
from flask import Flask
from sqlalchemy import Connection, Engine, Table, delete, exists, func, insert, select, text, update
from sqlalchemy.orm import Session

import app.tasks.models  # noqa: F401  (registers the shard tables in the metadata)
from app.audit.service import record_event
from app.core.errors import ApiProblem, ProblemType
from app.db.base import Base
from app.db.shards import ShardRegistry, shards
from app.workspaces.models import WorkspaceRow, WorkspaceState

RETRY_AFTER_SECONDS = 5  # a small workspace moves in well under that
BATCH_SIZE = 500

# How the write operations document the 503 (``@ns.response(503, MOVING_DOC, problem, ...)``).
MOVING_DOC = "The workspace is moving to another shard: retry after Retry-After seconds"
RETRY_AFTER_HEADER = {"Retry-After": {"type": "integer", "description": "Seconds to wait"}}

_DIRECTORY = WorkspaceRow.__table__
_ACTIVE = WorkspaceState.ACTIVE.value
_MOVING = WorkspaceState.MOVING.value


class WorkspaceMoving(ApiProblem):
    problem_type = ProblemType(
        slug="workspace-moving",
        title="Workspace is moving",
        status=503,
        description="The workspace's data is being moved to another database, so writes to it "
        "are paused for a few seconds; reads keep working. Nothing was written: retry after "
        "the number of seconds in the Retry-After header.",
    )

    def __init__(
        self, detail: str = "The workspace is moving to another shard; retry shortly."
    ) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


# --- the writers' side ---------------------------------------------------------------------


def _lock_key(workspace_id: uuid.UUID) -> int:
    """The workspace's advisory lock id on PostgreSQL (a signed 64-bit integer)."""
    digest = hashlib.blake2b(b"workspace-write:" + workspace_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def take_write_lock(
    connection: Connection | Session, workspace_id: uuid.UUID, *, shared: bool
) -> None:
    """On PostgreSQL, the workspace's transaction-scoped advisory lock. On SQLite the transaction
    already holds the database's write lock (``BEGIN IMMEDIATE``): nothing to add."""
    bind = connection.get_bind() if isinstance(connection, Session) else connection
    if bind.dialect.name != "postgresql":
        return
    lock = func.pg_advisory_xact_lock_shared if shared else func.pg_advisory_xact_lock
    connection.execute(select(lock(_lock_key(workspace_id))))


def guard_write(
    shard_session: Session, control_session: Session, workspace_id: uuid.UUID, shard: str
) -> None:
    """Call inside a write transaction on ``shard``, before writing the workspace's rows there:
    takes the workspace's write lock on the shard, then checks in a fresh read of the directory
    that the workspace is still ``active`` on ``shard``. ``WorkspaceMoving`` (503) if not."""
    take_write_lock(shard_session, workspace_id, shared=True)
    if control_session.in_transaction():
        control_session.rollback()  # a fresh snapshot, never one taken before the lock
    row = control_session.execute(
        select(_DIRECTORY.c.state, _DIRECTORY.c.shard).where(_DIRECTORY.c.id == workspace_id)
    ).one_or_none()
    control_session.rollback()  # hold nothing on the control database while writing
    if row is None:
        raise WorkspaceMoving("The workspace changed while this request ran; retry.")
    if row.state == WorkspaceState.DELETING.value:
        raise WorkspaceMoving("The workspace is being deleted.")
    if row.state != _ACTIVE:
        raise WorkspaceMoving()
    if row.shard != shard:
        raise WorkspaceMoving("The workspace has just moved to another shard; retry.")


# --- the mover's side -------------------------------------------------------------------


class MoveError(Exception):
    """The move was refused before anything changed; the message says why."""


class MoveFailed(Exception):
    """The move failed; the message says in which state it left the workspace."""


@dataclass(frozen=True)
class MoveEvent:
    """A progress report: ``step`` is start, flip, drain, copy, verify, switch, cleanup or done."""

    step: str
    message: str
    table: str | None = None
    done: int | None = None
    total: int | None = None


@dataclass
class MoveReport:
    workspace_id: uuid.UUID
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)  # per table, copied and verified
    checksums: dict[str, str] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)  # per shard, rows cleaned up
    moved: bool = False  # False: only leftovers were cleaned up


Progress = Callable[[MoveEvent], None]


def shard_tables() -> list[Table]:
    """Every table that holds a workspace's rows in its shard, parents before children. Tables
    that point at the directory (memberships, API keys, IP rules) live beside it in the control
    database and never move."""
    return [
        table
        for table in Base.metadata.sorted_tables
        if "workspace_id" in table.c
        and table.name != _DIRECTORY.name
        and not any(key.column.table.name == _DIRECTORY.name for key in table.foreign_keys)
    ]


def _ordered(table: Table, workspace_id: uuid.UUID, dialect: str) -> Any:
    """The workspace's rows in primary-key order, compared byte-wise on every engine (so SQLite
    and PostgreSQL agree on the order, whatever the database's collation)."""
    keys = []
    for column in table.primary_key.columns:
        if _python_type(column) is str:
            keys.append(column.collate("C" if dialect == "postgresql" else "BINARY"))
        else:
            keys.append(column)
    return select(table).where(table.c.workspace_id == workspace_id).order_by(*keys)


def _python_type(column: Any) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _canonical(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def fingerprint(connection: Connection, table: Table, workspace_id: uuid.UUID) -> tuple[int, str]:
    """(row count, SHA-256 of the canonical rows in key order) of a workspace in one table."""
    digest = hashlib.sha256()
    count = 0
    result = connection.execute(
        _ordered(table, workspace_id, connection.dialect.name),
        execution_options={"yield_per": BATCH_SIZE},
    )
    with closing(result):
        for row in result:
            values = [_canonical(value) for value in row]
            digest.update(json.dumps(values, ensure_ascii=False, sort_keys=True).encode() + b"\n")
            count += 1
    return count, digest.hexdigest()


def _count(connection: Connection, table: Table, workspace_id: uuid.UUID) -> int:
    statement = select(func.count()).select_from(table).where(table.c.workspace_id == workspace_id)
    return connection.execute(statement).scalar_one()


@contextmanager
def _write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes SQLite's write lock up front (as the repository's)."""
    with engine.connect() as connection:
        connection.execution_options(write_transaction=True)
        with connection.begin():
            yield connection


def _delete_rows(connection: Connection, workspace_id: uuid.UUID) -> int:
    """Remove the workspace's rows of every shard table, in the connection's transaction."""
    removed = 0
    for table in reversed(shard_tables()):  # children first
        mine = table.c.workspace_id == workspace_id
        if not connection.execute(select(exists().where(mine))).scalar():
            continue  # nothing to delete: leave the table's triggers alone
        with _triggers_off(connection, table):
            removed += connection.execute(delete(table).where(mine)).rowcount
    return removed


@contextmanager
def _triggers_off(connection: Connection, table: Table) -> Iterator[None]:
    """The table's own triggers off, for this transaction only.

    The audit log is append-only by trigger, yet a move must remove the events it copied from
    the old shard (they live on, identical, on the new one). DDL is transactional on both
    engines, so the triggers are back on at commit, and a crash midway rolls the change back:
    they are never left off. On PostgreSQL ``ALTER TABLE`` locks the table until the commit,
    which is short: one delete.
    """
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            text(
                "SELECT count(*) FROM pg_trigger "
                "WHERE tgrelid = CAST(:table AS regclass) AND NOT tgisinternal"
            ),
            {"table": table.name},
        ).scalar_one()
        if not found:
            yield
            return
        quoted = connection.dialect.identifier_preparer.quote(table.name)
        connection.exec_driver_sql(f"ALTER TABLE {quoted} DISABLE TRIGGER USER")
        yield
        connection.exec_driver_sql(f"ALTER TABLE {quoted} ENABLE TRIGGER USER")
        return
    triggers = connection.execute(
        text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table"),
        {"table": table.name},
    ).all()
    quote = connection.dialect.identifier_preparer.quote
    for name, _sql in triggers:
        connection.exec_driver_sql(f"DROP TRIGGER {quote(name)}")
    yield
    for _name, sql in triggers:
        connection.exec_driver_sql(sql)


def _leftovers(registry: ShardRegistry, workspace_id: uuid.UUID, home: str) -> dict[str, int]:
    """Rows of the workspace on shards other than its home: unreachable leftovers."""
    found: dict[str, int] = {}
    for name in registry.names:
        if name == home:
            continue
        with registry.engine(name).connect() as connection:
            rows = sum(_count(connection, table, workspace_id) for table in shard_tables())
        if rows:
            found[name] = rows
    return found


def _directory_row(control: Engine, workspace_id: uuid.UUID) -> Any:
    with control.connect() as connection:
        return connection.execute(
            select(_DIRECTORY.c.shard, _DIRECTORY.c.state).where(_DIRECTORY.c.id == workspace_id)
        ).one_or_none()


def _set_entry(
    control: Engine,
    workspace_id: uuid.UUID,
    *,
    expect: tuple[str, str],
    to: tuple[str, str],
    audit: bool = False,
) -> bool:
    """Compare-and-set the entry's (shard, state); False if it was not ``expect``. ``audit``
    records the change of shard in the audit log, in the same transaction."""
    with _write_transaction(control) as connection:
        result = connection.execute(
            update(_DIRECTORY)
            .where(
                _DIRECTORY.c.id == workspace_id,
                _DIRECTORY.c.shard == expect[0],
                _DIRECTORY.c.state == expect[1],
            )
            .values(shard=to[0], state=to[1], version=_DIRECTORY.c.version + 1)
        )
        if result.rowcount != 1:
            return False
        if audit:
            with Session(bind=connection) as session:  # joins the connection's transaction
                session.connection()
                record_event(
                    session,
                    action="workspace.moved",
                    entity_type="workspace",
                    entity_id=workspace_id,
                    workspace_id=workspace_id,
                    changes={"shard": {"before": expect[0], "after": to[0]}},
                )
        return True


def _flip(
    registry: ShardRegistry, workspace_id: uuid.UUID, target: str, *, force: bool
) -> tuple[str, str]:
    """Mark the entry moving; (its shard, its state before)."""
    with _write_transaction(registry.control) as connection:
        row = connection.execute(
            select(_DIRECTORY.c.shard, _DIRECTORY.c.state)
            .where(_DIRECTORY.c.id == workspace_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            raise MoveError(f"There is no workspace {workspace_id}.")
        if row.state == _MOVING and not force:
            raise MoveError(
                f"Workspace {workspace_id} is already moving. If no other move of it is running "
                "(a crashed one left it so), rerun with --force to take the move over."
            )
        if row.shard not in registry.names:
            raise MoveError(f"The directory places it on {row.shard!r}, which is not configured.")
        connection.execute(
            update(_DIRECTORY)
            .where(_DIRECTORY.c.id == workspace_id)
            .values(state=_MOVING, version=_DIRECTORY.c.version + 1)
        )
        return row.shard, row.state


def _drain(engine: Engine, workspace_id: uuid.UUID) -> None:
    """Wait for the writes in flight to the workspace on this shard (see the module docstring)."""
    with _write_transaction(engine) as connection:
        take_write_lock(connection, workspace_id, shared=False)


def _copy_and_verify(
    registry: ShardRegistry,
    workspace_id: uuid.UUID,
    source: str,
    target: str,
    report: MoveReport,
    emit: Progress,
    *,
    fail_after: int | None,
    batch_size: int,
) -> None:
    tables = shard_tables()
    with (
        registry.engine(source).connect() as reader,
        _write_transaction(registry.engine(target)) as writer,
    ):
        stale = _delete_rows(writer, workspace_id)  # a crashed earlier copy; never reachable
        if stale:
            emit(MoveEvent("copy", f"  removed {stale} rows left on {target} by an earlier try"))
        totals = {table.name: _count(reader, table, workspace_id) for table in tables}
        copied = 0
        for table in tables:
            total, done = totals[table.name], 0
            emit(MoveEvent("copy", f"  copy {table.name}: 0/{total}", table.name, 0, total))
            result = reader.execute(
                _ordered(table, workspace_id, reader.dialect.name),
                execution_options={"yield_per": batch_size},
            )
            try:  # a server-side cursor on PostgreSQL: close it even on failure
                for batch in result.partitions():
                    writer.execute(insert(table), [row._asdict() for row in batch])
                    done += len(batch)
                    copied += len(batch)
                    emit(
                        MoveEvent(
                            "copy", f"  copy {table.name}: {done}/{total}", table.name, done, total
                        )
                    )
                    if fail_after is not None and copied >= fail_after:
                        raise MoveFailed(f"injected failure after copying {copied} rows")
            finally:
                result.close()
        for table in tables:
            source_print = fingerprint(reader, table, workspace_id)
            target_print = fingerprint(writer, table, workspace_id)
            if source_print != target_print or source_print[0] != totals[table.name]:
                raise MoveFailed(
                    f"verification failed for {table.name}: source {source_print[0]} rows "
                    f"{source_print[1][:12]}, target {target_print[0]} rows {target_print[1][:12]}"
                )
            report.rows[table.name], report.checksums[table.name] = source_print
            emit(
                MoveEvent(
                    "verify",
                    f"  verify {table.name}: {source_print[0]} rows, "
                    f"sha256 {source_print[1][:16]}… equal on both shards",
                    table.name,
                )
            )


def _cleanup(
    registry: ShardRegistry, workspace_id: uuid.UUID, home: str, report: MoveReport, emit: Progress
) -> None:
    """Remove the workspace's rows from every shard but ``home`` (the mover holds the entry)."""
    for name in registry.names:
        if name == home:
            continue
        with _write_transaction(registry.engine(name)) as connection:
            removed = _delete_rows(connection, workspace_id)
        if removed:
            report.removed[name] = removed
            emit(MoveEvent("cleanup", f"Cleanup: removed {removed} rows from {name}"))


def move_workspace(
    workspace_id: uuid.UUID,
    target: str,
    *,
    progress: Progress | None = None,
    fail_after: int | None = None,
    force: bool = False,
    batch_size: int = BATCH_SIZE,
    registry: ShardRegistry | None = None,
) -> MoveReport:
    """Move a workspace's data to shard ``target`` (see the module docstring). Run it in an app
    context. ``fail_after`` injects a failure once that many rows are copied (tests).

    Refused (``MoveError``, nothing changed): an unknown workspace or shard, a workspace already
    moving. When the workspace already lives on ``target``, only the leftovers of an earlier
    move that failed after its switch are removed (refused if there are none). ``force`` takes
    over a move that crashed and left the workspace ``moving``: the move runs again from the
    shard the directory names (the copy first clears whatever the crashed one left on the
    target), or, with ``target`` being that shard, it is called off. Only force when no other
    move of the workspace is running: the entry is the only mutex between moves.
    """
    registry = registry or shards()
    emit: Progress = progress or (lambda _event: None)
    if target not in registry.names:
        raise MoveError(f"Unknown shard {target!r}; configured: {', '.join(registry.names)}.")
    entry = _directory_row(registry.control, workspace_id)
    if entry is None:
        raise MoveError(f"There is no workspace {workspace_id}.")
    if entry.state == WorkspaceState.DELETING.value:  # not even with force: it is going away
        raise MoveError(f"Workspace {workspace_id} is being deleted.")
    if (
        entry.shard == target
        and entry.state == _ACTIVE
        and not _leftovers(registry, workspace_id, target)
    ):
        raise MoveError(f"Workspace {workspace_id} is already on {target}; nothing to move.")

    started = time.monotonic()
    source, _state = _flip(registry, workspace_id, target, force=force)
    report = MoveReport(workspace_id, source, target)
    if source == target:  # leftovers only, or calling off a crashed move
        emit(MoveEvent("flip", f"Workspace {workspace_id} is on {target}: cleaning up leftovers"))
        try:
            _cleanup(registry, workspace_id, target, report, emit)
        finally:
            _set_entry(
                registry.control, workspace_id, expect=(target, _MOVING), to=(target, _ACTIVE)
            )
        emit(MoveEvent("done", f"Done in {time.monotonic() - started:.1f}s."))
        return report

    emit(MoveEvent("start", f"Moving workspace {workspace_id}: {source} -> {target}"))
    emit(MoveEvent("flip", "Directory: state=moving (writes to it answer 503 until the switch)"))
    switched = False
    try:
        _drain(registry.engine(source), workspace_id)
        emit(MoveEvent("drain", f"Writes in flight on {source} finished"))
        _copy_and_verify(
            registry,
            workspace_id,
            source,
            target,
            report,
            emit,
            fail_after=fail_after,
            batch_size=batch_size,
        )
        try:
            switched = _set_entry(
                registry.control,
                workspace_id,
                expect=(source, _MOVING),
                to=(target, _MOVING),
                audit=True,
            )
        except Exception:
            # The commit may have happened even so: the directory decides what to undo.
            entry = _directory_row(registry.control, workspace_id)
            switched = entry is not None and entry.shard == target
            if not switched:
                raise
        if not switched:
            raise MoveFailed("the directory entry changed during the move (was it forced?)")
    except BaseException as exc:
        if not switched:
            _undo(registry, workspace_id, source, target)
            emit(MoveEvent("failed", f"Move failed: {exc}. {source} still has everything."))
        raise
    emit(MoveEvent("switch", f"Directory: {workspace_id} now on {target}"))
    report.moved = True
    try:
        _cleanup(registry, workspace_id, target, report, emit)
    except Exception as exc:
        raise MoveFailed(
            f"the workspace is on {target} and complete, but removing its old rows failed "
            f"({exc}); run the command again to remove them"
        ) from exc
    finally:
        _set_entry(registry.control, workspace_id, expect=(target, _MOVING), to=(target, _ACTIVE))
    emit(MoveEvent("done", f"Done in {time.monotonic() - started:.1f}s: writes accepted again."))
    return report


def _undo(registry: ShardRegistry, workspace_id: uuid.UUID, source: str, target: str) -> None:
    """Before the switch: nothing of the workspace may stay on the target, and it is active on
    the source again. The target is usually clean already (its transaction rolled back)."""
    with _write_transaction(registry.engine(target)) as connection:
        _delete_rows(connection, workspace_id)
    _set_entry(registry.control, workspace_id, expect=(source, _MOVING), to=(source, _ACTIVE))


# --- the command ------------------------------------------------------------------------


def register_move_command(app: Flask) -> None:
    @app.cli.command("move-workspace")
    @click.argument("workspace_id", type=click.UUID)
    @click.argument("shard")
    @click.option(
        "--force",
        is_flag=True,
        help="Take over a move that crashed and left the workspace moving. Only when no other "
        "move of it runs.",
    )
    @click.option("--batch-size", default=BATCH_SIZE, show_default=True, type=click.IntRange(1))
    def move_workspace_command(
        workspace_id: uuid.UUID, shard: str, force: bool, batch_size: int
    ) -> None:
        """Move a workspace's data to another shard: copy, verify row counts and checksums,
        switch the directory entry, remove the source rows. Writes to the workspace answer 503
        meanwhile. Run it again after a failure to finish or clean up."""
        try:
            report = move_workspace(
                workspace_id,
                shard,
                progress=lambda event: click.echo(event.message),
                force=force,
                batch_size=batch_size,
            )
        except MoveError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # the progress lines above say how far it got
            raise click.ClickException(f"move failed: {type(exc).__name__}: {exc}") from None
        if not report.moved and not report.removed:
            click.echo("Nothing to clean up.")
