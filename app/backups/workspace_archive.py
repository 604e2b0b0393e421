"""Per-workspace export and import, free of HTTP (chapter 6 runs them as jobs).

**Format** ``taskapi-workspace-export`` version ``FORMAT_VERSION``: a gzip-compressed tar with
``manifest.json`` (format, version, when, the app version, the workspace's id, name and creation
time, and for ``tasks.jsonl`` its size, SHA-256 and line count) and ``tasks.jsonl``, one task per
line in the API's own task representation (the same JSON as ``GET .../tasks/{id}``), oldest first.

**Import** creates a NEW workspace with NEW task ids. Task ids are globally unique (UUIDv7), so
keeping them would make a second import of the same archive, or an import next to the original,
collide. Each new id carries the task's original creation time, so ids still sort like
``created_at``; timestamps, tags and every field are kept.

**Hostile archives**: the cheap checks come first, so a hostile archive costs at most a bounded,
linear amount of work. The body is limited (``WORKSPACE_IMPORT_MAX_BYTES``, a 413 above it), and
so is the decompressed size (the same limit: a gzip bomb stops there), the members (exactly the
two files above, regular files only) and the manifest (64 KiB). Then the manifest is validated,
``tasks.jsonl`` checked against its size, SHA-256 and line count, and only then is each line
parsed and validated. Strictly: ids are UUID strings in canonical form (an int, a bool or
``{...}`` is not an id), ``format_version`` is the integer 1 (not ``true`` or ``1.0``, which
Python would compare equal), NaN and Infinity are refused (Python's json accepts them; JSON does
not), timestamps lie between 1970 and 9999 (a UUIDv7 counts milliseconds from 1970: an earlier
one would wrap around), and a task id appears once. A bad archive is a 422 whose ``errors`` point
into the archive as one document: ``#/manifest/...`` and ``#/tasks/<line index>/<field>``.

**Writes**: nothing visible until it is complete. When the workspace's shard is the control
database, the tasks, the directory entry and the audit events (``workspace.created`` and
``workspace.imported``) are one transaction. Otherwise the tasks are committed on the shard first,
then the directory entry and both events in one transaction on the control database: until that
commits no request can reach the tasks (every read goes through the directory, and the id is new),
and if it fails they are removed again. A crash between the two leaves unreachable rows only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import re
import tarfile
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.audit.service import record_event
from app.auth.models import MembershipRow
from app.auth.permissions import Role
from app.core.errors import ApiProblem, ProblemType, ValidationProblem, json_body_problem
from app.db.shards import ShardRegistry
from app.tasks.models import Task, TaskRow, TaskTagRow, new_task_id, utc_now
from app.tasks.repository import task_from_row
from app.tasks.schemas import iso_utc, parse_datetime, task_fields, task_to_dict
from app.workspaces.models import Workspace, WorkspaceRow, WorkspaceState
from app.workspaces.schemas import workspace_name, workspace_to_dict
from app.workspaces.service import WorkspaceService, place

logger = logging.getLogger(__name__)

FORMAT = "taskapi-workspace-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TASKS = "tasks.jsonl"
MANIFEST_MAX_BYTES = 64 * 1024
MEDIA_TYPE = "application/gzip"
_SPOOL = 8 * 1024 * 1024  # archives up to this size stay in memory, larger ones on disk
_CHUNK = 64 * 1024
_INSERT_BATCH = 1000
_TASK_KEYS = frozenset(
    {"id", "title", "description", "status", "priority", "due_date", "tags"}
    | {"created_at", "updated_at"}
)
_MANIFEST_POINTER = "#/manifest"
_FILE_POINTER = f"{_MANIFEST_POINTER}/files/{TASKS}"
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
# A UUIDv7 holds milliseconds since 1970 (an imported task's id carries its created_at): an
# earlier time would wrap around to the far future. 9999 is as far as a datetime goes.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_TIMES = ("created_at", "updated_at")
_DIRECTORY = WorkspaceRow.__table__


class WorkspaceArchiveInvalid(ApiProblem):
    problem_type = ProblemType(
        slug="workspace-archive-invalid",
        title="Workspace archive refused",
        status=422,
        description="The archive is corrupt, truncated, too large once decompressed, not a "
        "workspace export of a version this server reads, or holds an invalid manifest or "
        "invalid tasks: `errors` lists them, each with a JSON pointer into the archive as one "
        "document, `#/manifest/<field>` or `#/tasks/<line index>/<field>`. Nothing was imported.",
    )

    def __init__(self, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        extensions: dict[str, Any] = {}
        if errors:
            limit = ValidationProblem.MAX_LISTED
            extensions["errors"] = errors[:limit]
            if len(errors) > limit:
                extensions["errors_truncated"] = True
        super().__init__(detail + " Nothing was imported.", **extensions)


@dataclass(frozen=True, slots=True)
class ExportedArchive:
    file: IO[bytes]  # positioned at the start; the caller closes it
    size: int
    sha256: str
    tasks: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    workspace: Workspace
    tasks: int
    source_workspace_id: uuid.UUID
    exported_at: datetime


# --- export ------------------------------------------------------------------------------------


def _tasks_of(connection: Connection, workspace_id: uuid.UUID) -> Iterator[Task]:
    """The workspace's tasks, oldest first, read on one connection inside one transaction."""
    tags: dict[uuid.UUID, list[str]] = {}
    for task_id, tag in connection.execute(
        select(TaskTagRow.task_id, TaskTagRow.tag)
        .where(TaskTagRow.workspace_id == workspace_id)
        .order_by(TaskTagRow.task_id, TaskTagRow.position)
    ):
        tags.setdefault(task_id, []).append(tag)
    rows = connection.execute(
        select(TaskRow.__table__)
        .where(TaskRow.workspace_id == workspace_id)
        .order_by(TaskRow.created_at, TaskRow.id)
        .execution_options(yield_per=500)
    )
    for row in rows:
        yield task_from_row(row, tuple(tags.get(row.id, ())))


def export_workspace(
    workspace: Workspace,
    shard: Session,
    *,
    app_version: str,
    clock: Callable[[], datetime] = utc_now,
) -> ExportedArchive:
    """Build the workspace's archive from one consistent snapshot of its shard."""
    exported_at = clock()
    lines = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 (closed below)
    digest, count = hashlib.sha256(), 0
    try:
        if shard.in_transaction():
            shard.rollback()  # the snapshot must start with this export
        connection = shard.connection()
        if connection.dialect.name == "postgresql":  # both queries see one snapshot
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for task in _tasks_of(connection, workspace.id):
            line = json.dumps(task_to_dict(task), ensure_ascii=False).encode() + b"\n"
            digest.update(line)
            lines.write(line)
            count += 1
        shard.rollback()  # read only: end the snapshot
        size = lines.tell()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "exported_at": iso_utc(exported_at),
            "app_version": app_version,
            "workspace": {
                "id": str(workspace.id),
                "name": workspace.name,
                "created_at": iso_utc(workspace.created_at),
            },
            "files": {TASKS: {"size": size, "sha256": digest.hexdigest(), "lines": count}},
        }
        lines.seek(0)
        archive = _pack(manifest, lines, size, exported_at)
    finally:
        lines.close()
    archive_digest = hashlib.sha256()
    while chunk := archive.read(_CHUNK):
        archive_digest.update(chunk)
    archive_size = archive.tell()
    archive.seek(0)
    return ExportedArchive(archive, archive_size, archive_digest.hexdigest(), count)


def _pack(manifest: dict[str, Any], lines: IO[bytes], size: int, at: datetime) -> IO[bytes]:
    archive = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 (the caller's)
    mtime = int(at.timestamp())
    encoded = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    with (
        gzip.GzipFile(fileobj=archive, mode="wb", mtime=mtime) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_info(MANIFEST, len(encoded), mtime), io.BytesIO(encoded))
        tar.addfile(_info(TASKS, size, mtime), lines)
    archive.seek(0)
    return archive


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o600
    return info


# --- import ------------------------------------------------------------------------------------


class _ExpansionLimit(Exception):
    pass


class _BoundedReader(io.RawIOBase):
    """A decompressing stream that refuses to produce more than ``limit`` bytes (gzip bombs)."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self._source, self._left = source, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(min(len(buffer), self._left + 1))
        if len(data) > self._left:
            raise _ExpansionLimit()
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


@dataclass
class _Read:
    manifest: dict[str, Any]
    tasks: list[dict[str, Any]]


def _refused(detail: str, pointer: str, why: str) -> WorkspaceArchiveInvalid:
    return WorkspaceArchiveInvalid(detail, [{"pointer": pointer, "detail": why}])


def _read_archive(archive: IO[bytes], limit: int) -> _Read:
    members: dict[str, bytes] = {}
    try:
        with gzip.GzipFile(fileobj=archive, mode="rb") as compressed:
            stream = io.BufferedReader(_BoundedReader(compressed, limit), _CHUNK)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if member.name not in {MANIFEST, TASKS} or member.name in members:
                        raise WorkspaceArchiveInvalid(
                            f"The archive holds an unexpected member {member.name[:80]!r}."
                        )
                    if not member.isfile():
                        raise WorkspaceArchiveInvalid(f"{member.name} is not a regular file.")
                    if member.name == MANIFEST and member.size > MANIFEST_MAX_BYTES:
                        raise WorkspaceArchiveInvalid("The manifest is too large.")
                    source = tar.extractfile(member)
                    assert source is not None
                    members[member.name] = source.read()
                    if len(members[member.name]) != member.size:
                        raise WorkspaceArchiveInvalid(f"{member.name} is truncated.")
            while stream.read(_CHUNK):  # to the end: gzip checks its length and CRC there
                pass
    except _ExpansionLimit:
        raise WorkspaceArchiveInvalid(
            f"The archive is larger than {limit} bytes once decompressed."
        ) from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise WorkspaceArchiveInvalid(
            f"The archive is not a readable gzip-compressed tar ({type(exc).__name__}): "
            "corrupt or truncated."
        ) from None
    if set(members) != {MANIFEST, TASKS}:
        raise WorkspaceArchiveInvalid(f"The archive must hold {MANIFEST} and {TASKS}.")
    manifest = _manifest(members[MANIFEST])
    data = members[TASKS]
    recorded = manifest["files"][TASKS]
    mismatch = f"{TASKS} does not match the manifest."
    if len(data) != recorded["size"]:
        raise _refused(mismatch, f"{_FILE_POINTER}/size", f"is not the file's size ({len(data)})")
    if hashlib.sha256(data).hexdigest() != recorded["sha256"]:
        raise _refused(mismatch, f"{_FILE_POINTER}/sha256", "is not the file's SHA-256")
    lines = data.splitlines()
    if len(lines) != recorded["lines"]:  # counted before a single line is parsed
        raise _refused(
            mismatch, f"{_FILE_POINTER}/lines", f"is not the file's line count ({len(lines)})"
        )
    return _Read(manifest, _tasks(lines))


class _BadJson(ValueError):
    """Why some bytes are not acceptable JSON; the message completes "The manifest ..."."""


def _no_constant(name: str) -> Any:
    raise _BadJson(f"contains {name}, which is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: Infinity in disguise
        raise _BadJson(f"contains the number {text[:40]}, too large for a double")
    return value


def _load_json(raw: bytes) -> Any:
    """``json.loads`` held to the rules of a request body, and to JSON itself: NaN, Infinity
    (which Python's json accepts by default), nesting beyond the depth limit (which would exhaust
    the recursion) and lone surrogates (which no database can store) are errors."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except _BadJson:
        raise
    except RecursionError:
        raise _BadJson("nests too deeply") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise _BadJson("is not valid JSON") from None
    problem = json_body_problem(value, raw)
    if problem is not None:
        raise _BadJson(problem)
    return value


def _is_uuid(value: Any) -> bool:
    """A UUID string in canonical form, as the API writes them: lower-case, hyphenated."""
    return isinstance(value, str) and _CANONICAL_UUID.match(value) is not None


def _timestamp(
    document: dict[str, Any], name: str, pointer: str, errors: list[dict[str, str]]
) -> datetime | None:
    """``document[name]`` as an aware date-time from 1970 on; else an error and None."""
    value = document.get(name)
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed < _EARLIEST:
        errors.append(
            {
                "pointer": f"{pointer}/{name}",
                "detail": "must be a date-time with a time zone, from 1970 to 9999",
            }
        )
        return None
    return parsed


def _manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = _load_json(raw)
    except _BadJson as exc:
        raise _refused(f"The manifest {exc}.", _MANIFEST_POINTER, str(exc)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refused(
            f"This is not a {FORMAT} archive.", f"{_MANIFEST_POINTER}/format", f"must be {FORMAT}"
        )
    version = manifest.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # True and 1.0 both == 1
        raise _refused(
            f"Format version {version!r} is not one this server reads ({FORMAT_VERSION}).",
            f"{_MANIFEST_POINTER}/format_version",
            f"must be the integer {FORMAT_VERSION}",
        )
    errors: list[dict[str, str]] = []
    _timestamp(manifest, "exported_at", _MANIFEST_POINTER, errors)
    workspace = manifest.get("workspace")
    pointer = f"{_MANIFEST_POINTER}/workspace"
    if not isinstance(workspace, dict):
        errors.append({"pointer": pointer, "detail": "must be an object"})
    else:
        if not _is_uuid(workspace.get("id")):
            errors.append({"pointer": f"{pointer}/id", "detail": "must be a canonical UUID"})
        if not isinstance(workspace.get("name"), str):
            errors.append({"pointer": f"{pointer}/name", "detail": "must be a string"})
        _timestamp(workspace, "created_at", pointer, errors)
    files = manifest.get("files")
    recorded = files.get(TASKS) if isinstance(files, dict) else None
    if not isinstance(recorded, dict):
        errors.append({"pointer": _FILE_POINTER, "detail": "must be an object"})
    else:
        for key in ("size", "lines"):
            value = recorded.get(key)
            if type(value) is not int or value < 0:
                errors.append(
                    {"pointer": f"{_FILE_POINTER}/{key}", "detail": "must be an integer >= 0"}
                )
        sha256 = recorded.get("sha256")
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            errors.append(
                {"pointer": f"{_FILE_POINTER}/sha256", "detail": "must be 64 lower-case hex digits"}
            )
    if errors:
        raise WorkspaceArchiveInvalid("The manifest is invalid; see errors.", errors)
    return manifest


def _tasks(lines: list[bytes]) -> list[dict[str, Any]]:
    """Every line validated; one problem listing each bad one (the first 50 or so: a hostile
    archive of bad lines stops there)."""
    errors: list[dict[str, str]] = []
    tasks: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for index, line in enumerate(lines):
        if len(errors) > ValidationProblem.MAX_LISTED:
            break
        pointer = f"#/tasks/{index}"
        try:
            document = _load_json(line)
        except _BadJson as exc:
            errors.append({"pointer": pointer, "detail": str(exc)})
            continue
        if not isinstance(document, dict) or set(document) != _TASK_KEYS:
            errors.append({"pointer": pointer, "detail": f"must have exactly {sorted(_TASK_KEYS)}"})
            continue
        count, fields = len(errors), None
        task_id = document["id"]
        if not _is_uuid(task_id):
            errors.append({"pointer": f"{pointer}/id", "detail": "must be a canonical UUID"})
        elif task_id in first_seen:
            errors.append(
                {
                    "pointer": f"{pointer}/id",
                    "detail": f"appears twice: #/tasks/{first_seen[task_id]}/id is the same",
                }
            )
        else:
            first_seen[task_id] = index
        try:
            fields = task_fields(document, pointer)
        except ValidationProblem as problem:
            errors.extend(problem.extensions["errors"])
        times = {name: _timestamp(document, name, pointer, errors) for name in _TIMES}
        if fields is not None and len(errors) == count:
            tasks.append({**fields, **times})
    if errors:
        raise WorkspaceArchiveInvalid(f"{TASKS} holds invalid tasks; see errors.", errors)
    return tasks


def import_name(value: str) -> str:
    """The new workspace's name given with the import (the ``name`` parameter), trimmed; a 400
    naming the parameter if it is not a valid workspace name."""
    try:
        return workspace_name({"name": value})
    except ValidationProblem as problem:
        found = problem.extensions["errors"]
        errors = [{"parameter": "name", "detail": error["detail"]} for error in found]
        raise ValidationProblem(errors, status=400) from None


def _archived_name(manifest: dict[str, Any]) -> str:
    try:
        return workspace_name({"name": manifest["workspace"]["name"]})
    except ValidationProblem as problem:
        pointer = f"{_MANIFEST_POINTER}/workspace/name"
        found = problem.extensions["errors"]
        errors = [{"pointer": pointer, "detail": error["detail"]} for error in found]
        raise WorkspaceArchiveInvalid(
            "The exported workspace's name is not valid here; see errors (or give a name).",
            errors,
        ) from None


def import_workspace(
    archive: IO[bytes],
    workspaces: WorkspaceService,
    *,
    max_bytes: int,
    name: str | None = None,
    new_id: Callable[[], uuid.UUID] = new_task_id,
    clock: Callable[[], datetime] = utc_now,
) -> ImportResult:
    """Create a new workspace holding the archive's tasks (new ids); all or nothing (see the
    module docstring for the order of the writes)."""
    chosen = import_name(name) if name is not None else None  # before reading the archive
    read = _read_archive(archive, max_bytes)
    registry: ShardRegistry = workspaces.shards
    workspace_id = new_id()
    now = clock()
    result = ImportResult(
        workspace=Workspace(
            id=workspace_id,
            name=chosen if chosen is not None else _archived_name(read.manifest),
            shard=place(workspace_id, registry.names),
            state=WorkspaceState.ACTIVE,
            created_at=now,
            updated_at=now,
            version=1,
        ),
        tasks=len(read.tasks),
        source_workspace_id=uuid.UUID(read.manifest["workspace"]["id"]),
        exported_at=parse_datetime(read.manifest["exported_at"]) or now,
    )
    rows, tags = _rows(read.tasks, workspace_id)
    control = workspaces.session
    if registry.engine(result.workspace.shard) is registry.control:
        with _write(control):  # one database: one transaction
            _insert_tasks(control, rows, tags)
            _insert_entry(control, result, owner=workspaces.principal.user_id)
        return result
    shard = workspaces.shard_session(result.workspace.shard)
    with _write(shard):
        _insert_tasks(shard, rows, tags)
    try:
        with _write(control):
            _insert_entry(control, result, owner=workspaces.principal.user_id)
    except BaseException:
        _remove_unreachable(registry, shard, workspace_id)
        raise
    return result


def _rows(
    tasks: list[dict[str, Any]], workspace_id: uuid.UUID
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, tags = [], []
    for task in tasks:
        created_at = task["created_at"]
        task_id = new_task_id(int(created_at.timestamp() * 1000))  # sorts like created_at
        rows.append(
            {
                "id": task_id,
                "workspace_id": workspace_id,
                "title": task["title"],
                "description": task["description"],
                "status": task["status"].value,
                "priority": task["priority"].value,
                "due_date": task["due_date"],
                "created_at": created_at,
                "updated_at": task["updated_at"],
                "version": 1,
            }
        )
        tags.extend(
            {"task_id": task_id, "tag": tag, "position": position, "workspace_id": workspace_id}
            for position, tag in enumerate(task["tags"])
        )
    return rows, tags


@contextmanager
def _write(session: Session) -> Iterator[None]:
    """A write transaction on ``session`` (BEGIN IMMEDIATE on SQLite), committed at the end."""
    if session.in_transaction():
        session.rollback()
    with session.begin():
        session.connection(execution_options={"write_transaction": True})
        yield


def _insert_tasks(session: Session, rows: list[dict[str, Any]], tags: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), _INSERT_BATCH):
        session.execute(insert(TaskRow.__table__), rows[start : start + _INSERT_BATCH])
    for start in range(0, len(tags), _INSERT_BATCH):
        session.execute(insert(TaskTagRow.__table__), tags[start : start + _INSERT_BATCH])


def _insert_entry(session: Session, result: ImportResult, *, owner: uuid.UUID | None) -> None:
    """The directory entry, its owner (the importing user) and its two audit events, in the
    caller's transaction on the control database: ``workspace.created`` (as any new workspace
    has) and ``workspace.imported``."""
    workspace = result.workspace
    session.execute(
        insert(_DIRECTORY).values(
            id=workspace.id,
            name=workspace.name,
            shard=workspace.shard,
            state=workspace.state.value,
            created_at=workspace.created_at,
            updated_at=workspace.updated_at,
            version=workspace.version,
        )
    )
    common: dict[str, Any] = {
        "entity_type": "workspace",
        "entity_id": workspace.id,
        "workspace_id": workspace.id,
    }
    record_event(session, action="workspace.created", after=workspace_to_dict(workspace), **common)
    record_event(
        session,
        action="workspace.imported",
        after={
            "tasks": result.tasks,
            "source_workspace_id": result.source_workspace_id,
            "exported_at": result.exported_at,
        },
        **common,
    )
    if owner is not None:
        session.execute(
            insert(MembershipRow.__table__).values(
                workspace_id=workspace.id,
                user_id=owner,
                role=Role.OWNER.value,
                created_at=workspace.created_at,
                updated_at=workspace.created_at,
            )
        )


def _remove_unreachable(registry: ShardRegistry, shard: Session, workspace_id: uuid.UUID) -> None:
    """After the directory's transaction failed, remove the tasks nothing leads to. Unless it
    committed after all (a connection lost during COMMIT): the directory decides. Best effort:
    the error that made the import fail is the one to report."""
    try:
        with registry.control.connect() as connection:
            if connection.scalar(select(exists().where(_DIRECTORY.c.id == workspace_id))):
                return
        with _write(shard):
            shard.execute(delete(TaskTagRow).where(TaskTagRow.workspace_id == workspace_id))
            shard.execute(delete(TaskRow).where(TaskRow.workspace_id == workspace_id))
    except Exception:
        logger.exception("An import left unreachable tasks of workspace %s", workspace_id)
