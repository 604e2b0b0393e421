"""Audit events: recording them inside a write's transaction, reading and verifying them.

Recording
    ``record_event(session, ...)`` adds one event to ``session``'s open write transaction, so the
    event commits with the write or not at all. Who and where come from the request being served
    (``actor``, ``request_id``, ``client_ip``); outside a request (CLI, seeding) the actor is
    ``system``.

Chains
    Events form one chain per workspace per database (``workspace_id`` None: the global chain of
    the database). Each event's ``hash`` is SHA-256 over its canonical JSON, ``prev_hash``
    included, so editing, removing or reordering an event breaks every later link. Appending
    takes the previous event's hash under a lock: on PostgreSQL a transaction-scoped advisory lock
    per chain, on SQLite the database's write lock (``BEGIN IMMEDIATE``), so two writers cannot
    both append to the same hash and fork the chain; a unique (workspace, sequence) index backs
    that up. What a chain cannot show is its newest events being cut off: anchoring the head
    elsewhere (a backup, a log line) is the way to catch that.

Verifying
    ``AuditLog.verify`` recomputes the chains a bounded piece at a time (``limit`` events per
    call): a piece that starts mid-chain links its first event to the stored hash of the event
    before it, so consecutive pieces check exactly what one pass from the genesis would.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any

from flask import has_request_context, request
from sqlalchemy import ColumnElement, select, text
from sqlalchemy.orm import Session

from app.audit.models import GENESIS_HASH, AuditEventRow
from app.core.errors import ValidationProblem
from app.core.request_id import request_id_var
from app.tasks.models import new_task_id, utc_now
from app.tasks.schemas import iso_utc

ANONYMOUS = "anonymous"
SYSTEM = "system"  # no request: the CLI, seeding, maintenance
MAX_IP_LENGTH = 45


class NotInWriteTransaction(RuntimeError):
    """record_event was called outside a write transaction: its event could not be atomic."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: uuid.UUID
    workspace_id: uuid.UUID | None
    sequence: int
    occurred_at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    request_id: str | None
    client_ip: str | None
    changes: dict[str, Any]
    prev_hash: str
    hash: str
    database: str = ""  # which database's chain holds it; set when read


def _to_event(row: AuditEventRow, database: str = "") -> AuditEvent:
    return AuditEvent(
        id=row.id,
        workspace_id=row.workspace_id,
        sequence=row.sequence,
        occurred_at=row.occurred_at,
        actor=row.actor,
        action=row.action,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        request_id=row.request_id,
        client_ip=row.client_ip,
        changes=row.changes,
        prev_hash=row.prev_hash,
        hash=row.hash,
        database=database,
    )


# --- Who, where ----------------------------------------------------------------------------------


def current_actor() -> str:
    """Who acts: the authenticated caller's subject (``user:<id>``, ``key:<prefix>``...),
    ``anonymous`` in a request nobody authenticated (a failed login), ``system`` outside one."""
    if not has_request_context():
        return SYSTEM
    from app.auth.principal import current_principal  # the auth module records events too

    principal = current_principal()
    return principal.subject if principal is not None else ANONYMOUS


def current_client_ip() -> str | None:
    """The client's address: the peer's, or behind ``TRUSTED_PROXIES`` reverse proxies the one
    they recorded in X-Forwarded-For (``app.core.proxies``); a client's own entries there are
    never believed."""
    if not has_request_context():
        return None
    return (request.remote_addr or "")[:MAX_IP_LENGTH] or None


# --- Recording -----------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A value as the JSON the API shows: aware datetimes in ISO 8601 UTC, UUIDs and enums as
    strings, tuples as lists. The hash is computed over exactly what is stored."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    raise TypeError(f"not an audit value: {type(value).__name__}")


def field_changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """field -> {before, after}: every field on a create or delete (a full snapshot), only the
    changed ones otherwise."""
    old, new = jsonable(before or {}), jsonable(after or {})
    snapshot = before is None or after is None
    return {
        name: {"before": old.get(name), "after": new.get(name)}
        for name in sorted(set(old) | set(new))
        if snapshot or old.get(name) != new.get(name)
    }


def event_hash(event: AuditEvent) -> str:
    """SHA-256 of the event's canonical JSON (sorted keys, no spaces), prev_hash included."""
    canonical = {
        "id": str(event.id),
        "workspace_id": None if event.workspace_id is None else str(event.workspace_id),
        "sequence": event.sequence,
        "occurred_at": iso_utc(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "request_id": event.request_id,
        "client_ip": event.client_ip,
        "changes": event.changes,
        "prev_hash": event.prev_hash,
    }
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _chain(workspace_id: uuid.UUID | None) -> ColumnElement[bool]:
    if workspace_id is None:
        return AuditEventRow.workspace_id.is_(None)
    return AuditEventRow.workspace_id == workspace_id


def _lock_key(workspace_id: uuid.UUID | None) -> int:
    digest = hashlib.blake2b(f"audit:{workspace_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)  # a bigint: PostgreSQL's lock key


def lock_chain(session: Session, workspace_id: uuid.UUID | None) -> None:
    """Hold the chain's append lock until the transaction ends.

    ``record_event`` calls it; call it yourself first in a transaction that will lock other rows
    *after* recording an event, so every writer takes the chain lock before its row locks and two
    writers cannot deadlock. PostgreSQL: an advisory lock (re-entrant within a transaction).
    SQLite: nothing to do, the write transaction already excludes every other writer.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(workspace_id)}
        )


def _check_write_transaction(session: Session) -> None:
    if not session.in_transaction():
        raise NotInWriteTransaction("record_event needs the write's open transaction")
    connection = session.connection()
    if connection.dialect.name == "sqlite" and not connection.get_execution_options().get(
        "write_transaction"
    ):
        # A deferred SQLite transaction would read the chain's head under a shared lock and
        # fail to upgrade it if another writer came first ("database is locked").
        raise NotInWriteTransaction(
            "on SQLite, begin with session.connection(execution_options="
            '{"write_transaction": True}) (BEGIN IMMEDIATE) before recording an event'
        )


def record_event(
    session: Session,
    *,
    action: str,
    entity_type: str,
    entity_id: str | uuid.UUID,
    workspace_id: uuid.UUID | None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    changes: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> AuditEvent:
    """Append one event to ``workspace_id``'s chain in ``session``'s database, in the caller's
    open write transaction: it commits with the write, or not at all.

    ``before``/``after``: the entity's fields (JSON-able: datetimes, UUIDs, enums are
    converted) before and after the write, None for a create/delete; the event stores the
    field-level difference. Or pass ``changes`` as a ready ``field -> {before, after}`` mapping.
    ``action`` is ``<entity>.<verb>`` in the past tense (``task.created``, ``backup.restored``).
    """
    _check_write_transaction(session)
    lock_chain(session, workspace_id)
    head = session.execute(
        select(AuditEventRow.sequence, AuditEventRow.hash)
        .where(_chain(workspace_id))
        .order_by(AuditEventRow.sequence.desc())
        .limit(1)
    ).one_or_none()
    event = AuditEvent(
        id=new_task_id(),
        workspace_id=workspace_id,
        sequence=1 if head is None else head.sequence + 1,
        occurred_at=utc_now(),
        actor=actor or current_actor(),
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        request_id=request_id_var.get(),
        client_ip=current_client_ip(),
        changes=jsonable(changes) if changes is not None else field_changes(before, after),
        prev_hash=GENESIS_HASH if head is None else head.hash,
        hash="",
    )
    event = replace(event, hash=event_hash(event))
    session.add(
        AuditEventRow(
            **{column.key: getattr(event, column.key) for column in AuditEventRow.__table__.columns}
        )
    )
    session.flush()
    return event


# --- Reading -------------------------------------------------------------------------------------

LIMIT_DEFAULT = 20
LIMIT_MAX = 100


@dataclass(frozen=True)
class EventFilter:
    entity_type: str | None = None
    entity_id: str | None = None
    action: str | None = None
    actor: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def conditions(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        for name in ("entity_type", "entity_id", "action", "actor"):
            value = getattr(self, name)
            if value is not None:
                found.append(getattr(AuditEventRow, name) == value)
        if self.since is not None:
            found.append(AuditEventRow.occurred_at >= self.since)
        if self.until is not None:
            found.append(AuditEventRow.occurred_at < self.until)
        return found


@dataclass(frozen=True)
class EventPage:
    items: list[AuditEvent]
    next_cursor: str | None


def encode_cursor(kind: str, position: Any) -> str:
    """An opaque cursor holding ``position`` (any JSON value) for endpoint ``kind``."""
    raw = json.dumps({"k": kind, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, kind: str, max_length: int = 200) -> Any:
    """The position a cursor of this kind holds; a 400 problem for anything else."""
    try:
        if len(cursor) > max_length:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("k") != kind or "p" not in data:
            raise ValueError
        return data["p"]
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationProblem(
            [{"parameter": "cursor", "detail": "is not a cursor this endpoint issued"}], status=400
        ) from None


VERIFY_LIMIT_DEFAULT = 1000
VERIFY_LIMIT_MAX = 10_000
_FOREIGN_CURSOR = "is not a cursor this endpoint issued"


@dataclass(frozen=True)
class ChainReport:
    database: str
    events: int  # checked by this piece
    broken_event_id: uuid.UUID | None = None
    reason: str | None = None
    last_event_id: uuid.UUID | None = None  # the last event checked: where this piece stopped

    @property
    def ok(self) -> bool:
        return self.broken_event_id is None


@dataclass(frozen=True)
class ChainRange:
    """A piece of one chain to check: sequences ``first`` through ``last`` (None: its end)."""

    database: str
    first: int = 1
    last: int | None = None


@dataclass(frozen=True)
class Verification:
    chains: list[ChainReport]
    next_cursor: str | None  # the rest, for the next call; None: nothing is left to check


def _is_sequence(value: Any) -> bool:
    # A sequence number is a 64-bit integer in every database: a bigger one is not ours.
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**63


class AuditLog:
    """One workspace's events, in every database that holds a chain of them (the control
    database: workspace events; its shard: task events; one database when they are the same).

    ``databases`` maps a label to a session; the workspace id scopes every query, so nothing
    here can read another workspace's events.
    """

    def __init__(self, workspace_id: uuid.UUID, databases: Mapping[str, Session]) -> None:
        self.workspace_id = workspace_id
        self.databases = dict(databases)

    def _scoped(self, *conditions: ColumnElement[bool]) -> Any:
        return select(AuditEventRow).where(
            AuditEventRow.workspace_id == self.workspace_id, *conditions
        )

    def list(self, query: EventFilter, limit: int, cursor: str | None) -> EventPage:
        """Newest first (by id, a UUIDv7: time order across databases), ``limit`` per page."""
        conditions = query.conditions()
        if cursor is not None:
            position = decode_cursor(cursor, "audit")
            try:
                before = uuid.UUID(str(position))
            except ValueError:
                raise ValidationProblem(
                    [{"parameter": "cursor", "detail": "is not a cursor this endpoint issued"}],
                    status=400,
                ) from None
            conditions.append(AuditEventRow.id < before)
        found: list[AuditEvent] = []
        for label, session in self.databases.items():
            rows = session.scalars(
                self._scoped(*conditions).order_by(AuditEventRow.id.desc()).limit(limit + 1)
            )
            found.extend(_to_event(row, label) for row in rows)
        found.sort(key=lambda event: event.id, reverse=True)
        page = found[:limit]
        more = len(found) > limit
        return EventPage(page, encode_cursor("audit", str(page[-1].id)) if more else None)

    def history(
        self, entity_type: str, entity_id: str, limit: int, cursor: str | None
    ) -> EventPage:
        """One entity's events, oldest first: in its chain's order."""
        after = 0
        if cursor is not None:
            after = decode_cursor(cursor, "history")
            # A sequence number is a 64-bit integer in every database: a bigger one is not ours.
            if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
                raise ValidationProblem(
                    [{"parameter": "cursor", "detail": "is not a cursor this endpoint issued"}],
                    status=400,
                )
        found: list[AuditEvent] = []
        for label, session in self.databases.items():
            rows = session.scalars(
                self._scoped(
                    AuditEventRow.entity_type == entity_type,
                    AuditEventRow.entity_id == entity_id,
                    AuditEventRow.sequence > after,
                )
                .order_by(AuditEventRow.sequence)
                .limit(limit + 1)
            )
            found.extend(_to_event(row, label) for row in rows)
            if found:
                break  # an entity's events are all in one chain
        page = found[:limit]
        more = len(found) > limit
        return EventPage(page, encode_cursor("history", page[-1].sequence) if more else None)

    def verify(
        self,
        limit: int = VERIFY_LIMIT_DEFAULT,
        *,
        since: uuid.UUID | None = None,
        until: uuid.UUID | None = None,
        cursor: str | None = None,
    ) -> Verification:
        """Recompute at most ``limit`` events' links and hashes, chain after chain: every chain
        of the workspace from its first event; or, in the one chain holding them, from event
        ``since`` and/or through event ``until`` (both inclusive); or the rest a previous call's
        ``next_cursor`` names. A chain's report stops at its first broken event."""
        if cursor is not None:
            pending = self._ranges_from_cursor(cursor)
        elif since is not None or until is not None:
            pending = [self._range_between(since, until)]
        else:
            pending = [ChainRange(label) for label in self.databases]
        reports: list[ChainReport] = []
        budget = limit
        while pending and budget > 0:
            piece = pending.pop(0)
            report = self._verify_range(piece, budget)
            reports.append(report)
            budget -= report.events
            if report.ok and budget == 0:  # stopped by the limit: is there more of it?
                rest = ChainRange(piece.database, piece.first + report.events, piece.last)
                if self._has_events(rest):
                    pending.insert(0, rest)
        position = [[piece.database, piece.first, piece.last] for piece in pending]
        return Verification(reports, encode_cursor("verify", position) if pending else None)

    def _in_workspace(self) -> ColumnElement[bool]:
        return AuditEventRow.workspace_id == self.workspace_id

    def _verify_range(self, piece: ChainRange, limit: int) -> ChainReport:
        session = self.databases[piece.database]
        previous_hash: str | None = GENESIS_HASH
        if piece.first > 1:  # mid-chain: link the first event to its predecessor's stored hash
            previous_hash = session.scalar(
                select(AuditEventRow.hash).where(
                    self._in_workspace(), AuditEventRow.sequence == piece.first - 1
                )
            )
        rows = self._in_order(session, piece.first, piece.last, limit)
        return verify_chain(
            piece.database, rows, previous_hash=previous_hash, first_sequence=piece.first
        )

    def _in_order(
        self, session: Session, first: int, last: int | None, limit: int, batch: int = 500
    ) -> Iterator[AuditEventRow]:
        """Up to ``limit`` of the chain's events from sequence ``first`` through ``last``, by
        sequence, a batch at a time (keyset: no cursor left open)."""
        after = first - 1
        while limit > 0:
            size = min(batch, limit)
            statement = self._scoped(AuditEventRow.sequence > after)
            if last is not None:
                statement = statement.where(AuditEventRow.sequence <= last)
            rows = session.scalars(statement.order_by(AuditEventRow.sequence).limit(size)).all()
            yield from rows
            if len(rows) < size:
                return
            after, limit = rows[-1].sequence, limit - size

    def _has_events(self, piece: ChainRange) -> bool:
        statement = select(AuditEventRow.id).where(
            self._in_workspace(), AuditEventRow.sequence >= piece.first
        )
        if piece.last is not None:
            statement = statement.where(AuditEventRow.sequence <= piece.last)
        return self.databases[piece.database].scalar(statement.limit(1)) is not None

    def _locate(self, event_id: uuid.UUID) -> tuple[str, int] | None:
        """The chain (database) and position of one of the workspace's events."""
        for label, session in self.databases.items():
            sequence = session.scalar(
                select(AuditEventRow.sequence).where(
                    self._in_workspace(), AuditEventRow.id == event_id
                )
            )
            if sequence is not None:
                return label, sequence
        return None

    def _range_between(self, since: uuid.UUID | None, until: uuid.UUID | None) -> ChainRange:
        errors: list[dict[str, str]] = []
        found: dict[str, tuple[str, int]] = {}
        for name, event_id in (("since", since), ("until", until)):
            if event_id is None:
                continue
            place = self._locate(event_id)
            if place is None:
                errors.append({"parameter": name, "detail": "is not an event of this workspace"})
            else:
                found[name] = place
        start, end = found.get("since"), found.get("until")
        if start is not None and end is not None:
            if start[0] != end[0]:
                errors.append(
                    {
                        "parameter": "until",
                        "detail": f"is in the {end[0]} database's chain, since in the "
                        f"{start[0]} database's: give events of one chain",
                    }
                )
            elif end[1] < start[1]:
                errors.append({"parameter": "until", "detail": "comes before since in its chain"})
        if errors:
            raise ValidationProblem(errors, status=400)
        chain = start or end
        assert chain is not None, "called with since or until"
        return ChainRange(chain[0], start[1] if start else 1, end[1] if end else None)

    def _ranges_from_cursor(self, cursor: str) -> list[ChainRange]:
        # Room for two chains with 64-character shard names and 19-digit sequences.
        position = decode_cursor(cursor, "verify", max_length=400)
        ranges: list[ChainRange] = []
        items = position if isinstance(position, list) else []
        for item in items:
            if not (isinstance(item, list) and len(item) == 3):
                break
            database, first, last = item
            if (
                not isinstance(database, str)
                or database not in self.databases
                or any(known.database == database for known in ranges)
                or not _is_sequence(first)
                or not (last is None or _is_sequence(last))
            ):
                break
            ranges.append(ChainRange(database, first, last))
        else:
            if ranges:
                return ranges
        raise ValidationProblem([{"parameter": "cursor", "detail": _FOREIGN_CURSOR}], status=400)


def verify_chain(
    database: str,
    rows: Iterable[AuditEventRow],
    *,
    previous_hash: str | None = GENESIS_HASH,
    first_sequence: int = 1,
) -> ChainReport:
    """Check ``rows``, a chain's events by sequence from ``first_sequence``: no gap, each
    prev_hash the hash of the event before, each stored hash the hash of its content.

    The first event links to ``previous_hash``: GENESIS_HASH for a chain's first event, else the
    stored hash of the event before it (None: that event is missing). So a chain checked in
    consecutive pieces is checked exactly as in one pass from the genesis.
    """
    expected, count, last_id = first_sequence, 0, None
    for row in rows:
        count += 1
        event = _to_event(row, database)
        last_id = event.id
        reason = None
        if event.sequence != expected:
            reason = f"sequence {event.sequence} where {expected} was expected: events are missing"
        elif previous_hash is None:
            reason = f"the event before it (sequence {expected - 1}) is missing: events are missing"
        elif event.prev_hash != previous_hash:
            reason = "prev_hash is not the previous event's hash"
        elif not hmac.compare_digest(event_hash(event), event.hash):
            reason = "its content no longer matches its hash: it was changed after it was written"
        if reason is not None:
            return ChainReport(database, count, event.id, reason, last_event_id=event.id)
        previous_hash, expected = event.hash, expected + 1
    return ChainReport(database, count, last_event_id=last_id)
