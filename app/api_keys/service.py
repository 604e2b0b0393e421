"""API key use cases, free of HTTP, and the check of a presented key.

A key reads ``tm_<prefix>_<secret>``. The prefix (8 characters, random) finds the row and is
what lists show, so a key found in a log or a repository can be recognised and revoked; the
secret (256 random bits) is shown once, at creation, and stored only as its SHA-256. A fast
hash is right here: nobody can guess 256 random bits, so the slow hashes that protect
passwords buy nothing but CPU on every request.

A key belongs to its workspace, not to the person who made it, and acts there as a member
(scopes read and write) or a viewer (read only): app/auth/permissions.py. Managing keys, like
every management action, needs a signed-in owner or admin. ``last_used_at`` is written at most
once a minute per key and process, never on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from app.audit.service import record_event
from app.auth.errors import InvalidToken
from app.auth.models import ApiKeyRow
from app.auth.permissions import Action
from app.auth.principal import Principal, PrincipalKind, Scope
from app.core.errors import ApiProblem, ProblemType, ValidationProblem
from app.db import db
from app.db.shards import outside_transaction
from app.tasks.models import new_task_id, utc_now
from app.workspaces.models import WorkspaceRow
from app.workspaces.service import WorkspaceService

KEY_MARK = "tm_"
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
PREFIX_LENGTH = 8
_KEY_SHAPE = re.compile(r"^tm_([a-z2-7]{8})_([A-Za-z0-9_-]{43})$")
MAX_ACTIVE_KEYS = 100  # per workspace
MAX_LIFETIME_DAYS = 3650
MAX_ROTATION_OVERLAP = 7 * 24 * 3600
LAST_USED_EVERY = 60.0  # seconds between two last_used_at writes per key and process


class ApiKeyNotFound(ApiProblem):
    problem_type = ProblemType(
        slug="api-key-not-found",
        title="API key not found",
        status=404,
        description="No API key of this workspace has this id.",
    )

    def __init__(self) -> None:
        super().__init__("This workspace has no API key with this id.")


class TooManyApiKeys(ApiProblem):
    problem_type = ProblemType(
        slug="too-many-api-keys",
        title="Too many API keys",
        status=409,
        description=f"A workspace may have {MAX_ACTIVE_KEYS} active keys; revoke unused ones.",
    )


@dataclass(frozen=True)
class ApiKey:
    id: uuid.UUID
    workspace_id: uuid.UUID
    prefix: str
    name: str
    scopes: tuple[str, ...]
    created_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str  # the whole key, tm_..., shown once


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> tuple[str, str, str]:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = secrets.token_urlsafe(32)  # 43 characters
    return prefix, secret, f"{KEY_MARK}{prefix}_{secret}"


def _to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        workspace_id=row.workspace_id,
        prefix=row.prefix,
        name=row.name,
        scopes=tuple(row.scopes.split()),
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def key_fields(document: Any) -> tuple[str, tuple[str, ...], int | None]:
    """Validate ``{name, scopes, expires_in_days?}``: one 422 lists every error."""
    errors: list[dict[str, str]] = []
    if not isinstance(document, dict):
        raise ValidationProblem([{"pointer": "#", "detail": "must be an object"}])
    unknown = sorted(set(document) - {"name", "scopes", "expires_in_days"})
    errors += [{"pointer": f"#/{name[:64]}", "detail": "is not a known field"} for name in unknown]
    name = document.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        errors.append({"pointer": "#/name", "detail": "must be 1-100 characters"})
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        errors.append({"pointer": "#/name", "detail": "must not contain control characters"})
    scopes = document.get("scopes", ["read"])
    valid = {scope.value for scope in Scope}
    if (
        not isinstance(scopes, list)
        or not scopes
        or len(scopes) > len(valid)
        or any(not isinstance(s, str) or s not in valid for s in scopes)
    ):
        errors.append({"pointer": "#/scopes", "detail": 'must be ["read"] or ["read", "write"]'})
    elif "write" in scopes and "read" not in scopes:
        errors.append({"pointer": "#/scopes", "detail": "write needs read too"})
    days = document.get("expires_in_days")
    if days is not None and (type(days) is not int or not 1 <= days <= MAX_LIFETIME_DAYS):
        errors.append(
            {"pointer": "#/expires_in_days", "detail": f"must be 1-{MAX_LIFETIME_DAYS} or null"}
        )
    if errors:
        raise ValidationProblem(errors)
    ordered = tuple(scope.value for scope in Scope if scope.value in scopes)
    return name.strip(), ordered, days


class ApiKeyService:
    def __init__(self, session: Session, directory: WorkspaceService) -> None:
        self.session = session
        self.directory = directory

    def list(self, workspace_id: uuid.UUID) -> list[ApiKey]:
        self.directory.access(workspace_id, Action.API_KEYS_MANAGE)
        rows = self.session.scalars(
            select(ApiKeyRow)
            .where(ApiKeyRow.workspace_id == workspace_id)
            .order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id)
            .limit(MAX_ACTIVE_KEYS * 10)
        )
        return [_to_key(row) for row in rows]

    def get(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
        self.directory.access(workspace_id, Action.API_KEYS_MANAGE)
        row = self.session.get(ApiKeyRow, key_id)
        if row is None or row.workspace_id != workspace_id:
            raise ApiKeyNotFound()
        return _to_key(row)

    def create(self, workspace_id: uuid.UUID, document: Any) -> CreatedKey:
        self.directory.access(workspace_id, Action.API_KEYS_MANAGE)
        name, scopes, days = key_fields(document)
        with self._write(workspace_id):
            self._check_room(workspace_id)
            expires = utc_now() + timedelta(days=days) if days else None
            created = self._insert(workspace_id, name, scopes, expires)
            record_event(
                self.session,
                action="api_key.created",
                entity_type="api_key",
                entity_id=created.key.id,
                workspace_id=workspace_id,
                after={"prefix": created.key.prefix, "name": name, "scopes": " ".join(scopes)},
            )
        return created

    def revoke(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> None:
        self.directory.access(workspace_id, Action.API_KEYS_MANAGE)
        with self._write(workspace_id):
            row = self._row(workspace_id, key_id)
            if row.revoked_at is None:
                row.revoked_at = utc_now()
                record_event(
                    self.session,
                    action="api_key.revoked",
                    entity_type="api_key",
                    entity_id=row.id,
                    workspace_id=workspace_id,
                    after={"prefix": row.prefix},
                )

    def rotate(self, workspace_id: uuid.UUID, key_id: uuid.UUID, overlap: int) -> CreatedKey:
        """A new key with the same name, scopes and expiry; the old one works ``overlap``
        more seconds (0: not at all), so a deployment can switch without downtime."""
        self.directory.access(workspace_id, Action.API_KEYS_MANAGE)
        with self._write(workspace_id):
            old = self._row(workspace_id, key_id)
            now = utc_now()
            if old.revoked_at is not None or (old.expires_at and old.expires_at <= now):
                raise ApiKeyNotFound()
            if overlap:  # both work for a while: the new one must fit beside the others
                self._check_room(workspace_id, besides=old.id)
            created = self._insert(
                workspace_id, old.name, tuple(old.scopes.split()), old.expires_at
            )
            if overlap:
                ends = now + timedelta(seconds=overlap)
                old.expires_at = min(old.expires_at, ends) if old.expires_at else ends
            else:
                old.revoked_at = now
            record_event(
                self.session,
                action="api_key.rotated",
                entity_type="api_key",
                entity_id=old.id,
                workspace_id=workspace_id,
                after={"prefix": old.prefix, "successor": created.key.prefix, "overlap": overlap},
            )
        return created

    # --- helpers ---------------------------------------------------------------------------------

    def _insert(
        self,
        workspace_id: uuid.UUID,
        name: str,
        scopes: tuple[str, ...],
        expires_at: datetime | None,
    ) -> CreatedKey:
        prefix, secret, whole = _new_secret()
        now = utc_now()
        row = ApiKeyRow(
            id=new_task_id(),
            workspace_id=workspace_id,
            prefix=prefix,
            secret_hash=_hash(secret),
            name=name,
            scopes=" ".join(scopes),
            created_by=self.directory.principal.user_id,
            created_at=now,
            expires_at=expires_at,
        )
        self.session.add(row)
        self.session.flush()
        return CreatedKey(_to_key(row), whole)

    def _check_room(self, workspace_id: uuid.UUID, besides: uuid.UUID | None = None) -> None:
        now = utc_now()
        active = self.session.scalar(
            select(func.count()).where(
                ApiKeyRow.workspace_id == workspace_id,
                ApiKeyRow.id != besides if besides is not None else ApiKeyRow.id.is_not(None),
                ApiKeyRow.revoked_at.is_(None),
                or_(ApiKeyRow.expires_at.is_(None), ApiKeyRow.expires_at > now),
            )
        )
        if (active or 0) >= MAX_ACTIVE_KEYS:
            raise TooManyApiKeys(f"This workspace has {active} active keys already.")

    def _row(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> ApiKeyRow:
        row = self.session.get(ApiKeyRow, key_id, with_for_update=True)
        if row is None or row.workspace_id != workspace_id:
            raise ApiKeyNotFound()
        return row

    @contextmanager
    def _write(self, workspace_id: uuid.UUID) -> Iterator[None]:
        """A write transaction holding the directory entry's lock, so two creations cannot
        both pass the cap (SQLite's BEGIN IMMEDIATE serialises them anyway)."""
        if self.session.in_transaction():
            self.session.rollback()
        with self.session.begin():
            self.session.connection(execution_options={"write_transaction": True})
            self.session.execute(
                select(WorkspaceRow.id).where(WorkspaceRow.id == workspace_id).with_for_update()
            )
            yield


# --- Checking a presented key (every request that sends one) -----------------------------------

_KEY_BY_PREFIX = select(
    ApiKeyRow.id,
    ApiKeyRow.workspace_id,
    ApiKeyRow.secret_hash,
    ApiKeyRow.scopes,
    ApiKeyRow.expires_at,
    ApiKeyRow.revoked_at,
).where(ApiKeyRow.prefix == bindparam("prefix"))
_TOUCH = (
    update(ApiKeyRow)
    .where(ApiKeyRow.id == bindparam("key_id"))
    .values(last_used_at=bindparam("now"))
)
_last_touched: dict[uuid.UUID, float] = {}
_touch_lock = threading.Lock()


def authenticate_api_key(presented: str) -> Principal:
    """The principal of a presented key; 401 ``invalid-token`` if it is not a live key."""
    match = _KEY_SHAPE.match(presented)
    if match is None:
        raise InvalidToken("The API key is malformed.")
    prefix, secret = match.groups()
    row = (
        outside_transaction(db.session()).execute(_KEY_BY_PREFIX, {"prefix": prefix}).one_or_none()
    )
    # Compare even when no row matched, so timing does not tell which prefixes exist.
    expected = row.secret_hash if row is not None else _hash("no such key")
    if not hmac.compare_digest(_hash(secret), expected) or row is None:
        raise InvalidToken("The API key is not valid.")
    now = utc_now()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise InvalidToken("The API key has been revoked or has expired.")
    _note_use(row.id, now)
    return Principal(
        kind=PrincipalKind.API_KEY,
        user_id=None,
        subject=f"key:{prefix}",
        scopes=frozenset(Scope(scope) for scope in row.scopes.split()),
        workspace_id=row.workspace_id,
    )


def _note_use(key_id: uuid.UUID, now: datetime) -> None:
    """Record the use at most once a minute per key in this process (one small UPDATE)."""
    tick = time.monotonic()
    with _touch_lock:
        last = _last_touched.get(key_id)
        if last is not None and tick - last < LAST_USED_EVERY:
            return
        if len(_last_touched) > 10_000:  # bounded: forget the oldest half
            for stale in sorted(_last_touched, key=_last_touched.__getitem__)[:5000]:
                del _last_touched[stale]
        _last_touched[key_id] = tick
    # In this request's session, after its read: a second connection would wait on SQLite for
    # the read's lock that this very thread holds.
    session = db.session()
    if session.in_transaction():
        session.rollback()
    with session.begin():
        session.connection(execution_options={"write_transaction": True})
        session.execute(_TOUCH, {"key_id": key_id, "now": now})
