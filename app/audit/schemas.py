"""The audit wire format: Swagger models, query parameter parsing, JSON shape of an event."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask_restx import Model, fields
from werkzeug.datastructures import MultiDict

from app.audit.service import (
    LIMIT_DEFAULT,
    LIMIT_MAX,
    VERIFY_LIMIT_DEFAULT,
    VERIFY_LIMIT_MAX,
    AuditEvent,
    EventFilter,
    Verification,
)
from app.core.errors import ValidationProblem
from app.tasks.schemas import DATETIME_RULE, NullableString, int_param, iso_utc, parse_datetime

_NAME = re.compile(r"[a-z][a-z0-9_.]{0,49}")  # action, entity_type
_ACTOR = re.compile(r"[a-z][a-z0-9_.:-]{0,49}")  # system, anonymous, user:<uuid>, key:<prefix>
_ENTITY_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")
# An event id as the API writes it: a UUIDv7, lower-case, hyphenated.
_EVENT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_EVENT_ID_RULE = "must be an audit event id: a UUIDv7 in canonical form (lower-case, hyphenated)"

PAGE_PARAMS: dict[str, dict[str, Any]] = {
    "limit": {
        "in": "query",
        "type": "integer",
        "minimum": 1,
        "maximum": LIMIT_MAX,
        "default": LIMIT_DEFAULT,
        "description": "Events per page",
    },
    "cursor": {
        "in": "query",
        "type": "string",
        "description": "Opaque: the `next_cursor` of the previous page",
    },
}
FILTER_PARAMS: dict[str, dict[str, Any]] = {
    "entity_type": {"in": "query", "type": "string", "description": "task or workspace"},
    "entity_id": {"in": "query", "type": "string", "description": "The entity's id"},
    "action": {"in": "query", "type": "string", "description": "e.g. task.updated"},
    "actor": {
        "in": "query",
        "type": "string",
        "description": "user:<id>, key:<prefix>, anonymous or system",
    },
    "since": {
        "in": "query",
        "type": "string",
        "format": "date-time",
        "description": "Events at or after this instant (ISO 8601 with a time zone)",
    },
    "until": {
        "in": "query",
        "type": "string",
        "format": "date-time",
        "description": "Events before this instant (ISO 8601 with a time zone)",
    },
}
LIST_PARAMS = {**FILTER_PARAMS, **PAGE_PARAMS}
_EVENT_ID_EXAMPLE = "01a19b7d-90e0-7ced-8f5b-e2db23a6513e"
VERIFY_PARAMS: dict[str, dict[str, Any]] = {
    "since": {
        "in": "query",
        "type": "string",
        "format": "uuid",
        "description": "Start at this event (inclusive) and check only its chain; its link to "
        "the event before it is checked too",
        "x-example": _EVENT_ID_EXAMPLE,
    },
    "until": {
        "in": "query",
        "type": "string",
        "format": "uuid",
        "description": "Stop after this event (inclusive); with since, an event of the same chain",
    },
    "limit": {
        "in": "query",
        "type": "integer",
        "minimum": 1,
        "maximum": VERIFY_LIMIT_MAX,
        "default": VERIFY_LIMIT_DEFAULT,
        "description": "Events checked by this call, over every chain; follow `next` for the rest",
    },
    "cursor": {
        "in": "query",
        "type": "string",
        "description": "Opaque: the `next_cursor` of the previous call (not with since or until)",
    },
}

audit_event = Model(
    "AuditEvent",
    {
        "id": fields.String(description="UUIDv7", example="01a19b7d-90e0-7ced-8f5b-e2db23a6513e"),
        "sequence": fields.Integer(description="Position in its chain", example=1),
        "database": fields.String(
            description="The database whose chain holds it", example="control"
        ),
        "occurred_at": fields.String(example="2026-11-27T10:00:00.000Z"),
        "actor": fields.String(
            description="Who acted: user:<id>, key:<prefix>, anonymous (nobody signed in) or "
            "system (the CLI, maintenance)",
            example="user:01935f3a-6b1e-7000-8000-0000000000aa",
        ),
        "action": fields.String(example="task.updated"),
        "entity_type": fields.String(example="task"),
        "entity_id": fields.String(example="01a19b7d-90e0-7ced-8f5b-e2db23a6513e"),
        "workspace_id": NullableString(example="01a19b7b-0000-7000-8000-000000000001"),
        "request_id": NullableString(
            description="X-Request-ID of the write; null outside a request"
        ),
        "client_ip": NullableString(
            description="The writer's address, shown to admins only (personal data); else null"
        ),
        "changes": fields.Raw(
            description="field -> {before, after}: only the changed fields, every field on a "
            "create or delete",
            example={"status": {"before": "todo", "after": "done"}},
        ),
        "prev_hash": fields.String(description="hash of the previous event in its chain"),
        "hash": fields.String(description="SHA-256 of this event's canonical JSON and prev_hash"),
    },
)
audit_page = Model(
    "AuditPage",
    {
        "items": fields.List(fields.Nested(audit_event)),
        "next_cursor": NullableString(description="Pass as cursor for the next page; null: last"),
        "next": NullableString(description="URL of the next page; null on the last"),
    },
)
chain_report = Model(
    "AuditChainReport",
    {
        "database": fields.String(example="control"),
        "events": fields.Integer(description="Events checked by this call", example=3),
        "ok": fields.Boolean(example=True),
        "broken_event_id": NullableString(description="The first event that does not verify"),
        "reason": NullableString(description="Why it does not"),
        "last_event_id": NullableString(
            description="The last event checked: where this call stopped in the chain"
        ),
    },
)
audit_verification = Model(
    "AuditVerification",
    {
        "ok": fields.Boolean(
            description="No event checked by this call breaks its chain (the whole log "
            "verifies when every call up to next: null said ok)",
            example=True,
        ),
        "events": fields.Integer(description="Events checked, over every chain", example=3),
        "chains": fields.List(fields.Nested(chain_report)),
        "next_cursor": NullableString(
            description="Pass as cursor to check the rest; null: nothing is left to check"
        ),
        "next": NullableString(description="URL checking the rest; null when nothing is left"),
    },
)
MODELS = (audit_event, audit_page, chain_report, audit_verification)


def _once(args: MultiDict[str, str], names: list[str], errors: list[dict[str, str]]) -> None:
    for name in names:
        if len(args.getlist(name)) > 1:
            errors.append({"parameter": name, "detail": "must be given once"})


def parse_page(args: MultiDict[str, str], errors: list[dict[str, str]]) -> tuple[int, str | None]:
    _once(args, list(PAGE_PARAMS), errors)
    limit = int_param(args, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX, errors)
    return limit, args.get("cursor")


def parse_list_params(args: MultiDict[str, str]) -> tuple[EventFilter, int, str | None]:
    """The filters and page of ``GET .../audit``, or one 400 problem listing every bad one."""
    errors: list[dict[str, str]] = []
    _once(args, list(FILTER_PARAMS), errors)
    values: dict[str, Any] = {}
    for name in ("entity_type", "action", "actor"):
        raw = args.get(name)
        pattern, allowed = (
            (_ACTOR, "a-z 0-9 _ . : -") if name == "actor" else (_NAME, "a-z 0-9 _ .")
        )
        if raw is not None and not pattern.fullmatch(raw):
            errors.append(
                {"parameter": name, "detail": f"must be 1-50 of {allowed} starting with a letter"}
            )
        values[name] = raw
    raw_id = args.get("entity_id")
    if raw_id is not None and not _ENTITY_ID.fullmatch(raw_id):
        errors.append({"parameter": "entity_id", "detail": "must be 1-200 of A-Z a-z 0-9 . _ : -"})
    values["entity_id"] = raw_id
    for name in ("since", "until"):
        raw = args.get(name)
        values[name] = None if raw is None else parse_datetime(raw)
        if raw is not None and values[name] is None:
            errors.append({"parameter": name, "detail": DATETIME_RULE})
    if values["since"] and values["until"] and values["since"] >= values["until"]:
        errors.append({"parameter": "until", "detail": "must be later than since"})
    limit, cursor = parse_page(args, errors)
    if errors:
        raise ValidationProblem(errors, status=400)
    return EventFilter(**values), limit, cursor


def parse_history_params(args: MultiDict[str, str]) -> tuple[int, str | None]:
    errors: list[dict[str, str]] = []
    limit, cursor = parse_page(args, errors)
    if errors:
        raise ValidationProblem(errors, status=400)
    return limit, cursor


def parse_verify_params(
    args: MultiDict[str, str],
) -> tuple[int, uuid.UUID | None, uuid.UUID | None, str | None]:
    """``limit``, ``since``, ``until`` and ``cursor`` of ``GET .../audit/verify``, or one 400
    problem listing every bad one."""
    errors: list[dict[str, str]] = []
    _once(args, list(VERIFY_PARAMS), errors)
    limit = int_param(args, "limit", VERIFY_LIMIT_DEFAULT, 1, VERIFY_LIMIT_MAX, errors)
    bounds: dict[str, uuid.UUID | None] = {}
    for name in ("since", "until"):
        raw = args.get(name)
        bounds[name] = None if raw is None or not _EVENT_ID.fullmatch(raw) else uuid.UUID(raw)
        if raw is not None and bounds[name] is None:
            errors.append({"parameter": name, "detail": _EVENT_ID_RULE})
    cursor = args.get("cursor")
    if cursor is not None and ("since" in args or "until" in args):
        errors.append({"parameter": "cursor", "detail": "holds the range: not with since or until"})
    if errors:
        raise ValidationProblem(errors, status=400)
    return limit, bounds["since"], bounds["until"], cursor


def event_to_dict(event: AuditEvent, *, show_client_ip: bool) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "sequence": event.sequence,
        "database": event.database,
        "occurred_at": iso_utc(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "workspace_id": None if event.workspace_id is None else str(event.workspace_id),
        "request_id": event.request_id,
        "client_ip": event.client_ip if show_client_ip else None,
        "changes": event.changes,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def verification_to_dict(verification: Verification, next_url: str | None) -> dict[str, Any]:
    reports = verification.chains
    return {
        "ok": all(report.ok for report in reports),
        "events": sum(report.events for report in reports),
        "chains": [
            {
                "database": report.database,
                "events": report.events,
                "ok": report.ok,
                "broken_event_id": _id_or_none(report.broken_event_id),
                "reason": report.reason,
                "last_event_id": _id_or_none(report.last_event_id),
            }
            for report in reports
        ],
        "next_cursor": verification.next_cursor,
        "next": next_url,
    }


def _id_or_none(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)
