"""Backups of the whole database set (the control database and every shard), free of HTTP.

A route calls these methods now and answers 201; chapter 6 hands the same calls to a Celery job
(and the route answers 202). Nothing here reads the request or ``current_app``: the service gets
its directory, engines and limits when it is built (``app.backups.backup_service``).

**Storage: files, not a table.** A backup is one archive ``<id>.tar`` in ``BACKUP_DIR`` plus a
small ``<id>.json`` beside it (size, SHA-256, created, engine...). A table in the control
database would be the wrong place: restoring a backup rewinds that database, and the list of
backups would forget every backup newer than the one restored. Backups must outlive the data
they describe. The ``.json`` is written last (after an atomic rename of the archive), so a
crash mid-backup leaves no half backup in the list; only listed backups are ever used.

**Archive format** (``FORMAT``, version ``FORMAT_VERSION``): an uncompressed tar (a custom-format
``pg_dump`` is already compressed) holding ``manifest.json`` and one file per database. The
manifest lists each database (``control`` or ``shard:<name>``), its engine, file, size, SHA-256
and Alembic revision, plus the shard names, the app version and when it was made. A reader
refuses a format version it does not know.

**Restore never touches live data before everything is checked**: the archive against its
recorded SHA-256 and size, the manifest, every file against the manifest's SHA-256, each file by
its engine (``PRAGMA integrity_check``; ``pg_restore --list``), the Alembic revision (must be the
code's head: the schema must match the code that will read it) and the database set (same shard
names, same engines). Only then: a safety backup of the current data ("pre-restore"), then each
database replaced in one transaction of its own. A failure after that point (a full disk) names
the safety backup to restore from.

**Consistency**: each database's copy is one consistent snapshot; the set is not one instant
(the databases are copied one after the other). A workspace's tasks all live in one database, so
each workspace is consistent in itself, provided the directory's copy names the shard whose copy
holds them: a ``placement`` probe read before the first copy and after the last says whether a
workspace changed shard meanwhile, and then everything is copied again (``COPY_ATTEMPTS``). After
a restore, ``settle`` ends the moves and deletes the backup caught half done. The reasoning is in
``app.backups.placement``. A workspace created while the backup ran may be missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import Engine

from app.backups import engines
from app.core.errors import ApiProblem, ProblemType
from app.tasks.models import new_task_id, utc_now
from app.tasks.schemas import iso_utc, parse_datetime

logger = logging.getLogger(__name__)

FORMAT = "taskapi-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 1024 * 1024
CONTROL = "control"
REASONS = ("requested", "pre-restore")
_CHUNK = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}\.(sqlite3|pgdump)$")
_LOCK_FILE = ".lock"
COPY_ATTEMPTS = 3  # a workspace move takes seconds: a backup racing one copies again


class BackupNotFound(ApiProblem):
    problem_type = ProblemType(
        slug="backup-not-found",
        title="Backup not found",
        status=404,
        description="No backup has this id (it may have been deleted, or removed by retention).",
    )

    def __init__(self) -> None:
        super().__init__("There is no backup with this id.")


class BackupDamaged(ApiProblem):
    problem_type = ProblemType(
        slug="backup-damaged",
        title="Backup archive damaged",
        status=422,
        description="The backup archive is corrupt, truncated or not in a format this version "
        "reads: a checksum, its size or its manifest does not match. Nothing was changed.",
    )

    def __init__(self, detail: str) -> None:
        super().__init__(f"{detail} Nothing was changed.")


class BackupIncompatible(ApiProblem):
    problem_type = ProblemType(
        slug="backup-incompatible",
        title="Backup does not fit this deployment",
        status=409,
        description="The backup is intact but was made for another schema revision or another "
        "set of databases (shard names, engines). Nothing was changed. Restore it with the "
        "matching code and configuration, or migrate a copy first.",
    )

    def __init__(self, detail: str) -> None:
        super().__init__(f"{detail} Nothing was changed.")


class BackupBusy(ApiProblem):
    problem_type = ProblemType(
        slug="backup-busy",
        title="A backup operation is running",
        status=409,
        description="Another backup, restore or deletion is running; they run one at a time. "
        "Or workspaces kept moving between shards while a backup copied the databases, so it "
        "could not take a copy in which every workspace is where the directory says. Nothing was "
        "changed. Retry after the time given in Retry-After.",
    )

    def __init__(self, detail: str = "Another backup operation is running; retry shortly.") -> None:
        super().__init__(detail, headers={"Retry-After": "30"})


class RestoreFailed(RuntimeError):
    """Some databases were restored and then one failed: a server fault, never the input's."""


@dataclass(frozen=True, slots=True)
class DatabaseCopy:
    key: str  # "control" or "shard:<name>"
    engine: str
    file: str
    size: int
    sha256: str
    alembic_revision: str | None


@dataclass(frozen=True, slots=True)
class Backup:
    id: uuid.UUID
    created_at: datetime
    size: int
    sha256: str
    engine: str  # "sqlite", "postgresql", or "mixed"
    databases: tuple[DatabaseCopy, ...]
    shards: tuple[str, ...]
    alembic_revision: str | None
    app_version: str
    reason: str
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class RestoreResult:
    restored: Backup
    safety_backup: Backup


def database_key(shard: str | None) -> str:
    return CONTROL if shard is None else f"shard:{shard}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_to_dict(copy: DatabaseCopy) -> dict[str, Any]:
    """One database's entry, as the manifest and the API both show it."""
    return {
        "key": copy.key,
        "engine": copy.engine,
        "file": copy.file,
        "size": copy.size,
        "sha256": copy.sha256,
        "alembic_revision": copy.alembic_revision,
    }


def _manifest(backup: Backup) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "id": str(backup.id),
        "created_at": iso_utc(backup.created_at),
        "app_version": backup.app_version,
        "alembic_revision": backup.alembic_revision,
        "shards": list(backup.shards),
        "reason": backup.reason,
        "databases": [copy_to_dict(copy) for copy in backup.databases],
    }


def _sidecar(backup: Backup) -> dict[str, Any]:
    return {**_manifest(backup), "size": backup.size, "sha256": backup.sha256}


class _Invalid(ValueError):
    pass


def _field(document: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = document.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise _Invalid(f"{name} is missing or of the wrong type")
    return value


def _parse_manifest(document: Any, *, archive: bool) -> Backup:
    """A manifest (``archive``) or a sidecar as a Backup; _Invalid says what is wrong."""
    if not isinstance(document, dict):
        raise _Invalid("it is not a JSON object")
    if document.get("format") != FORMAT:
        raise _Invalid(f"format is not {FORMAT!r}")
    if document.get("format_version") != FORMAT_VERSION:
        raise _Invalid(
            f"format_version {document.get('format_version')!r} is not one this version reads "
            f"({FORMAT_VERSION})"
        )
    try:
        backup_id = uuid.UUID(_field(document, "id", str))
    except ValueError:
        raise _Invalid("id is not a UUID") from None
    created_at = parse_datetime(_field(document, "created_at", str))
    if created_at is None:
        raise _Invalid("created_at is not a date-time")
    copies = []
    for entry in _field(document, "databases", list):
        if not isinstance(entry, dict):
            raise _Invalid("a databases entry is not an object")
        copy = DatabaseCopy(
            key=_field(entry, "key", str),
            engine=_field(entry, "engine", str),
            file=_field(entry, "file", str),
            size=_field(entry, "size", int),
            sha256=_field(entry, "sha256", str),
            alembic_revision=entry.get("alembic_revision"),
        )
        if copy.engine not in engines.SUFFIXES or not _FILE_NAME.match(copy.file):
            raise _Invalid(f"database {copy.key!r}: unknown engine or bad file name")
        if not _SHA256.match(copy.sha256) or copy.size < 0:
            raise _Invalid(f"database {copy.key!r}: bad sha256 or size")
        copies.append(copy)
    keys = [copy.key for copy in copies]
    files = [copy.file for copy in copies]
    if not copies or len(set(keys)) != len(keys) or len(set(files)) != len(files):
        raise _Invalid("databases is empty or names a database or file twice")
    shards = _field(document, "shards", list)
    if not all(isinstance(name, str) for name in shards):
        raise _Invalid("shards is not a list of names")
    reason = _field(document, "reason", str)
    if reason not in REASONS:
        raise _Invalid("reason is unknown")
    size, sha256 = (0, "0" * 64) if archive else (document.get("size"), document.get("sha256"))
    if not isinstance(size, int) or not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise _Invalid("size or sha256 is missing")
    used = {copy.engine for copy in copies}
    return Backup(
        id=backup_id,
        created_at=created_at,
        size=size,
        sha256=sha256,
        engine=used.pop() if len(used) == 1 else "mixed",
        databases=tuple(copies),
        shards=tuple(shards),
        alembic_revision=document.get("alembic_revision"),
        app_version=str(document.get("app_version", "")),
        reason=reason,
    )


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    temporary.chmod(0o600)
    os.replace(temporary, path)


# Told after each change: (action, backup, details). The audit log records them (``backup.created``,
# ``backup.deleted``, ``backup.restored``).
EventListener = Callable[[str, "Backup", Mapping[str, Any]], None]
# Read before the first database is copied and after the last: a different value means a
# workspace's rows changed database meanwhile (a move), so the copies may disagree on where it is.
PlacementProbe = Callable[[], object]
# Run once every database is restored: ends what the backup caught half done (a workspace moving
# or being deleted); returns what it did, for the ``backup.restored`` event.
Settle = Callable[[], Mapping[str, Any]]


class BackupService:
    """Backups of one database set, kept in ``directory``.

    ``databases`` maps each distinct database's key (``control``, ``shard:<name>``) to its
    engine; ``shards`` are the configured shard names; ``head`` is the code's Alembic head.
    """

    def __init__(
        self,
        directory: Path,
        databases: Mapping[str, Engine],
        *,
        shards: list[str],
        head: str | None,
        keep: int,
        app_version: str,
        clock: Callable[[], datetime] = utc_now,
        new_id: Callable[[], uuid.UUID] = new_task_id,
        on_event: EventListener | None = None,
        placement: PlacementProbe | None = None,
        settle: Settle | None = None,
    ) -> None:
        self.directory = directory
        self.on_event = on_event
        self.placement = placement
        self.settle = settle
        self.databases = dict(databases)
        self.shards = sorted(shards)
        self.head = head
        self.keep = keep
        self.app_version = app_version
        self._clock = clock
        self._new_id = new_id

    # --- queries ------------------------------------------------------------------------------

    def list(self) -> list[Backup]:
        """Every complete backup, newest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for sidecar in self.directory.glob("*.json"):
            backup = self._read_sidecar(sidecar)
            if backup is not None:
                found.append(backup)
        return sorted(found, key=lambda b: (b.created_at, b.id.int), reverse=True)

    def get(self, backup_id: uuid.UUID) -> Backup:
        backup = self._read_sidecar(self._sidecar_path(backup_id))
        if backup is None or not self.archive_path(backup_id).is_file():
            raise BackupNotFound()
        return backup

    def archive_path(self, backup_id: uuid.UUID) -> Path:
        return self.directory / f"{backup_id}.tar"

    def open_archive(self, backup_id: uuid.UUID) -> tuple[Backup, IO[bytes]]:
        """The backup and its archive opened for reading (a download streams it)."""
        backup = self.get(backup_id)
        try:
            return backup, self.archive_path(backup_id).open("rb")
        except FileNotFoundError:  # deleted in between
            raise BackupNotFound() from None

    # --- writes -------------------------------------------------------------------------------

    def create(self, *, reason: str = "requested") -> Backup:
        """Back up every database into a new archive, then apply retention (keep the newest)."""
        with self._exclusive():
            backup = self._create(reason)
            self._apply_retention()
        return backup

    def delete(self, backup_id: uuid.UUID) -> Backup:
        with self._exclusive():
            backup = self.get(backup_id)
            self._remove(backup_id)
            self._event("backup.deleted", backup, {"by": "request"})
        return backup

    def restore(self, backup_id: uuid.UUID) -> RestoreResult:
        """Verify the backup completely, take a safety backup, then replace every database, then
        settle what the backup caught half done (``settle``)."""
        settled: dict[str, Any] = {}
        unsettled: Exception | None = None
        with self._exclusive():
            backup = self.get(backup_id)
            work = Path(tempfile.mkdtemp(prefix=".restore-", dir=self.directory))
            try:
                verified = self._verified(backup, work)
                safety = self._create("pre-restore")
                done: list[str] = []
                for copy in verified.databases:
                    try:
                        engines.restore(self.databases[copy.key], work / copy.file)
                    except engines.DatabaseToolError as exc:
                        raise RestoreFailed(
                            f"restoring {copy.key} failed after {done or 'no database'} "
                            f"had been restored; restore the safety backup {safety.id}: {exc}"
                        ) from exc
                    done.append(copy.key)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if self.settle is not None:
                try:
                    settled = dict(self.settle())
                except Exception as exc:  # the data is restored: record that, then report
                    logger.exception("Restored backup %s, but could not settle it", backup.id)
                    unsettled = exc
        logger.info("Restored backup %s (safety backup %s)", backup.id, safety.id)
        # Recorded after the restore, which rewound the audit log with everything else.
        self._event("backup.restored", backup, {"safety_backup_id": str(safety.id), **settled})
        if unsettled is not None:
            raise RestoreFailed(
                f"backup {backup.id} was restored, but ending the moves and deletes it caught "
                f"half done failed: {unsettled}"
            ) from unsettled
        return RestoreResult(restored=backup, safety_backup=safety)

    # --- internals ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One backup operation at a time across every worker and thread (a lock file);
        a second one is refused at once rather than left waiting in a request."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.directory / _LOCK_FILE).open("a") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BackupBusy() from None
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _event(self, action: str, backup: Backup, details: Mapping[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(action, backup, details)

    def _sidecar_path(self, backup_id: uuid.UUID) -> Path:
        return self.directory / f"{backup_id}.json"

    def _read_sidecar(self, path: Path) -> Backup | None:
        try:
            backup_id = uuid.UUID(path.stem)
            backup = _parse_manifest(json.loads(path.read_bytes()), archive=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:  # _Invalid and JSONDecodeError are ValueErrors
            logger.warning("Ignoring unreadable backup metadata %s: %s", path.name, exc)
            return None
        return backup if backup.id == backup_id else None

    def _create(self, reason: str) -> Backup:
        backup_id = self._new_id()
        for attempt in range(1, COPY_ATTEMPTS + 1):
            created_at = self._clock()
            work = Path(tempfile.mkdtemp(prefix=".create-", dir=self.directory))
            try:
                before = self.placement() if self.placement is not None else None
                copies = self._copy_databases(work)
                if self.placement is not None and self.placement() != before:
                    logger.warning(
                        "A workspace changed shard while backup %s copied the databases "
                        "(attempt %s of %s)",
                        backup_id,
                        attempt,
                        COPY_ATTEMPTS,
                    )
                    continue
                backup = self._archive(backup_id, created_at, reason, copies, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            logger.info("Created backup %s (%s bytes, %s)", backup.id, backup.size, reason)
            self._event("backup.created", backup, {})
            return backup
        raise BackupBusy(
            f"Workspaces moved between shards during each of {COPY_ATTEMPTS} attempts to copy "
            "the databases; retry once the moves are done."
        )

    def _copy_databases(self, work: Path) -> list[DatabaseCopy]:
        copies = []
        for key, engine in self.databases.items():
            engine_name = engines.engine_name(engine)
            name = key.replace(":", "-") + "." + engines.SUFFIXES[engine_name]
            revision = engines.revision_of(engine)
            engines.dump(engine, work / name)
            copies.append(
                DatabaseCopy(
                    key=key,
                    engine=engine_name,
                    file=name,
                    size=(work / name).stat().st_size,
                    sha256=sha256_of(work / name),
                    alembic_revision=revision,
                )
            )
        return copies

    def _archive(
        self,
        backup_id: uuid.UUID,
        created_at: datetime,
        reason: str,
        copies: list[DatabaseCopy],
        work: Path,
    ) -> Backup:
        """The archive and its metadata, from the copies in ``work``."""
        used = {copy.engine for copy in copies}
        backup = Backup(
            id=backup_id,
            created_at=created_at,
            size=0,
            sha256="",
            engine=used.pop() if len(used) == 1 else "mixed",
            databases=tuple(copies),
            shards=tuple(self.shards),
            alembic_revision=copies[0].alembic_revision,  # the control database's
            app_version=self.app_version,
            reason=reason,
        )
        archive = work / "archive.tar"
        self._write_archive(archive, backup, work)
        backup = replace(backup, size=archive.stat().st_size, sha256=sha256_of(archive))
        os.replace(archive, self.archive_path(backup_id))
        # Last: a backup is listed (and usable) only once its archive is complete.
        _write_atomically(self._sidecar_path(backup_id), json.dumps(_sidecar(backup)).encode())
        return backup

    def _write_archive(self, archive: Path, backup: Backup, work: Path) -> None:
        mtime = int(backup.created_at.timestamp())

        def info(name: str, size: int) -> tarfile.TarInfo:
            item = tarfile.TarInfo(name)
            item.size, item.mtime, item.mode = size, mtime, 0o600
            return item

        manifest = json.dumps(_manifest(backup), indent=2).encode()
        with archive.open("wb") as file:
            with tarfile.open(fileobj=file, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.addfile(info(MANIFEST, len(manifest)), io.BytesIO(manifest))
                for copy in backup.databases:
                    with (work / copy.file).open("rb") as data:
                        tar.addfile(info(copy.file, copy.size), data)
            file.flush()
            os.fsync(file.fileno())
        archive.chmod(0o600)

    def _apply_retention(self) -> None:
        for old in self.list()[self.keep :]:
            self._remove(old.id)
            self._event("backup.deleted", old, {"by": "retention"})
            logger.info("Retention removed backup %s (keeping %s)", old.id, self.keep)

    def _remove(self, backup_id: uuid.UUID) -> None:
        # The metadata first: from then on the backup is no longer listed or usable.
        self._sidecar_path(backup_id).unlink(missing_ok=True)
        self.archive_path(backup_id).unlink(missing_ok=True)

    def _verified(self, backup: Backup, work: Path) -> Backup:
        """Extract the archive into ``work`` and check everything; the manifest's Backup."""
        path = self.archive_path(backup.id)
        if path.stat().st_size != backup.size or sha256_of(path) != backup.sha256:
            raise BackupDamaged(
                "The archive does not match its recorded size and SHA-256: it is corrupt or "
                "truncated."
            )
        try:
            manifest = self._extract(path, work)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            detail = str(exc) if isinstance(exc, _Invalid) else "it is not a readable tar archive"
            raise BackupDamaged(f"The archive is damaged: {detail}.") from None
        if manifest.id != backup.id:
            raise BackupDamaged("The archive's manifest names another backup.")
        self._check_compatible(manifest)
        for copy in manifest.databases:
            file = work / copy.file
            if file.stat().st_size != copy.size or sha256_of(file) != copy.sha256:
                raise BackupDamaged(
                    f"The copy of {copy.key} does not match the manifest's SHA-256."
                )
            problem, revision = engines.check(self.databases[copy.key], file)
            if problem is not None:
                raise BackupDamaged(f"The copy of {copy.key} is unusable: {problem}.")
            if revision is not None and revision != copy.alembic_revision:
                raise BackupDamaged(f"The copy of {copy.key} is not at the manifest's revision.")
        return manifest

    def _extract(self, path: Path, work: Path) -> Backup:
        """Read the tar safely: regular files only, names from the manifest, bounded sizes.
        Members are written under names this code chose, never paths taken from the archive."""
        seen: dict[str, Path] = {}
        manifest: Backup | None = None
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile() or member.name in seen:
                    raise _Invalid(f"unexpected member {member.name[:80]!r}")
                if member.name == MANIFEST:
                    if member.size > MANIFEST_MAX_BYTES:
                        raise _Invalid("the manifest is too large")
                    source = tar.extractfile(member)
                    assert source is not None
                    manifest = _parse_manifest(json.loads(source.read()), archive=True)
                    seen[MANIFEST] = work / MANIFEST
                    continue
                if not _FILE_NAME.match(member.name):
                    raise _Invalid(f"unexpected member {member.name[:80]!r}")
                target = work / member.name
                source = tar.extractfile(member)
                assert source is not None
                with target.open("wb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)
                if target.stat().st_size != member.size:
                    raise _Invalid(f"{member.name} is truncated")
                seen[member.name] = target
        if manifest is None:
            raise _Invalid("it has no manifest")
        expected = {MANIFEST, *(copy.file for copy in manifest.databases)}
        if set(seen) != expected:
            raise _Invalid("its files do not match the manifest")
        return manifest

    def _check_compatible(self, manifest: Backup) -> None:
        wanted = {key: engines.engine_name(engine) for key, engine in self.databases.items()}
        found = {copy.key: copy.engine for copy in manifest.databases}
        if list(manifest.shards) != self.shards or found != wanted:
            raise BackupIncompatible(
                f"The backup was made for shards {list(manifest.shards)} on {found}; this "
                f"deployment has shards {self.shards} on {wanted}."
            )
        for copy in manifest.databases:
            if copy.alembic_revision != self.head:
                raise BackupIncompatible(
                    f"The backup's {copy.key} database is at schema revision "
                    f"{copy.alembic_revision!r}; the code expects {self.head!r}."
                )
