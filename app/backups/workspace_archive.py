"""Per-workspace export and import, free of HTTP (chapter 6 runs them as jobs).

**Format** ``taskapi-workspace-export`` version ``FORMAT_VERSION``: a gzip-compressed tar with
``manifest.json`` (format, version, when, the app version, the workspace's id, name and creation
time, and for ``tasks.jsonl`` its size, SHA-256 and line count) and ``tasks.jsonl``, one task per
line in the API's own task representation (the same JSON as ``GET .../tasks/{id}``), oldest first.

**Import** creates a NEW workspace with NEW task ids. Task ids are globally unique (UUIDv7), so
keeping them would make a second import of the same archive, or an import next to the original,
collide. Each new id carries the task's original creation time, so ids still sort like
``created_at``; timestamps, tags and every field are kept.

**Hostile archives**: the body is limited (``WORKSPACE_IMPORT_MAX_BYTES``, a 413 above it), and
so is the decompressed size (the same limit: a gzip bomb stops there), the members (exactly the
two files above, regular files only) and the manifest. The whole archive is read and every line
validated before anything is written; a bad one is a 422 listing the problems. The tasks are
then written in one transaction on the new workspace's shard, and the directory entry last: until
it exists no request can reach the tasks, and if it fails the tasks are removed again.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.core.errors import ApiProblem, ProblemType, ValidationProblem, json_body_problem
from app.tasks.models import Task, TaskRow, TaskTagRow, new_task_id, utc_now
from app.tasks.repository import task_from_row
from app.tasks.schemas import iso_utc, parse_datetime, task_fields, task_to_dict
from app.workspaces.models import Workspace
from app.workspaces.schemas import workspace_name
from app.workspaces.service import WorkspaceService, place

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


class WorkspaceArchiveInvalid(ApiProblem):
    problem_type = ProblemType(
        slug="workspace-archive-invalid",
        title="Workspace archive refused",
        status=422,
        description="The archive is corrupt, truncated, too large once decompressed, not a "
        "workspace export of a version this server reads, or holds invalid tasks (`errors` "
        "lists them, with a pointer to `/tasks/<line index>/<field>`). Nothing was imported.",
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
    lines = members[TASKS]
    recorded = manifest["files"][TASKS]
    if len(lines) != recorded["size"] or hashlib.sha256(lines).hexdigest() != recorded["sha256"]:
        raise WorkspaceArchiveInvalid(f"{TASKS} does not match the manifest's size and SHA-256.")
    tasks = _tasks(lines)
    if len(tasks) != recorded["lines"]:
        raise WorkspaceArchiveInvalid(f"{TASKS} does not have the manifest's number of lines.")
    return _Read(manifest, tasks)


def _load_json(raw: bytes) -> Any:
    """``json.loads`` held to the rules of a request body: nesting beyond the depth limit (which
    would exhaust the recursion) and lone surrogates (which no database can store) are errors."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if json_body_problem(value, raw) is not None:
        raise ValueError("not acceptable JSON")
    return value


def _manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = _load_json(raw)
    except ValueError:
        raise WorkspaceArchiveInvalid("The manifest is not JSON.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WorkspaceArchiveInvalid(f"This is not a {FORMAT} archive.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise WorkspaceArchiveInvalid(
            f"Format version {manifest.get('format_version')!r} is not one this server reads "
            f"({FORMAT_VERSION})."
        )
    workspace = manifest.get("workspace")
    files = manifest.get("files")
    recorded = files.get(TASKS) if isinstance(files, dict) else None
    valid = (
        isinstance(workspace, dict)
        and isinstance(workspace.get("name"), str)
        and isinstance(workspace.get("id"), str)
        and isinstance(manifest.get("exported_at"), str)
        and parse_datetime(manifest["exported_at"]) is not None
        and isinstance(recorded, dict)
        and all(type(recorded.get(key)) is int for key in ("size", "lines"))
        and isinstance(recorded.get("sha256"), str)
    )
    if not valid:
        raise WorkspaceArchiveInvalid("The manifest is incomplete.")
    try:
        uuid.UUID(workspace["id"])
    except ValueError:
        raise WorkspaceArchiveInvalid("The manifest's workspace id is not a UUID.") from None
    return manifest


def _tasks(lines: bytes) -> list[dict[str, Any]]:
    """Every line validated; one problem listing each bad one."""
    errors: list[dict[str, str]] = []
    tasks: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, line in enumerate(lines.splitlines()):
        pointer = f"#/tasks/{index}"
        try:
            document = _load_json(line)
        except ValueError:
            errors.append({"pointer": pointer, "detail": "is not a JSON line"})
            continue
        if not isinstance(document, dict) or set(document) != _TASK_KEYS:
            errors.append({"pointer": pointer, "detail": f"must have exactly {sorted(_TASK_KEYS)}"})
            continue
        try:
            fields = task_fields(document, pointer)
        except ValidationProblem as problem:
            errors.extend(problem.extensions["errors"])
            continue
        times = {}
        for name in ("created_at", "updated_at"):
            value = document[name]
            times[name] = parse_datetime(value) if isinstance(value, str) else None
            if times[name] is None:
                errors.append({"pointer": f"{pointer}/{name}", "detail": "must be a date-time"})
        if str(document["id"]) in seen:
            errors.append({"pointer": f"{pointer}/id", "detail": "appears twice"})
        seen.add(str(document["id"]))
        if len(errors) > ValidationProblem.MAX_LISTED:
            break
        tasks.append({**fields, **times})
    if errors:
        raise WorkspaceArchiveInvalid(f"{TASKS} holds invalid tasks; see errors.", errors)
    return tasks


def import_workspace(
    archive: IO[bytes],
    workspaces: WorkspaceService,
    *,
    max_bytes: int,
    name: str | None = None,
    new_id: Callable[[], uuid.UUID] = new_task_id,
) -> ImportResult:
    """Create a new workspace holding the archive's tasks (new ids); all or nothing."""
    read = _read_archive(archive, max_bytes)
    workspace_document = {"name": name if name is not None else read.manifest["workspace"]["name"]}
    workspace_name(workspace_document)  # a bad name is refused before anything is written
    workspace_id = new_id()
    shard_name = place(workspace_id, workspaces.shards.names)
    shard = workspaces.shard_session(shard_name)
    rows, tags = [], []
    for task in read.tasks:
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
    if shard.in_transaction():
        shard.rollback()
    with shard.begin():
        shard.connection(execution_options={"write_transaction": True})
        for start in range(0, len(rows), _INSERT_BATCH):
            shard.execute(insert(TaskRow.__table__), rows[start : start + _INSERT_BATCH])
        for start in range(0, len(tags), _INSERT_BATCH):
            shard.execute(insert(TaskTagRow.__table__), tags[start : start + _INSERT_BATCH])
    try:
        workspace = workspaces.create(workspace_document, workspace_id=workspace_id)
    except BaseException:
        with shard.begin():  # no directory entry leads to them: remove them again
            shard.execute(delete(TaskTagRow).where(TaskTagRow.workspace_id == workspace_id))
            shard.execute(delete(TaskRow).where(TaskRow.workspace_id == workspace_id))
        raise
    assert workspace.shard == shard_name
    return ImportResult(
        workspace=workspace,
        tasks=len(rows),
        source_workspace_id=uuid.UUID(read.manifest["workspace"]["id"]),
        exported_at=parse_datetime(read.manifest["exported_at"]) or utc_now(),
    )
