"""The Task's wire format: Swagger models, input validation, query parsing, serialisation.

Input rules, in one place:
* ``title`` is trimmed, then must be 1-200 characters; ``description`` up to 5000 or null.
* ``tags``: up to 20; each is trimmed and lower-cased, then 1-30 of ``a-z 0-9 _ -`` (starting with
  a letter or digit); duplicates are dropped, order kept.
* ``due_date``: ISO 8601 date-time with a time zone (``Z`` or an offset), or null; stored in UTC.
* Read-only fields (``id``, ``created_at``, ``updated_at``) are ignored, so a client may send back
  what it read. Any other unknown field is rejected (422), so a typo never passes silently.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask_restx import Model, fields
from werkzeug.datastructures import MultiDict

from app.core.errors import ValidationProblem
from app.core.validation import schema_errors
from app.tasks.models import Priority, Status, Task
from app.tasks.repository import SORTABLE_FIELDS, TaskQuery

TITLE_MAX = 200
DESCRIPTION_MAX = 5000
TAGS_MAX = 20
TAG_MAX = 30
TAG_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
PER_PAGE_DEFAULT = 20
PER_PAGE_MAX = 100
QUERY_TEXT_MAX = 200
BULK_MAX_OPERATIONS = 100

READ_ONLY_FIELDS = frozenset({"id", "created_at", "updated_at"})
_NULLABLE_FIELDS = ("description", "due_date")

_EXAMPLE_ID = "01935d3e-8f2a-7c4e-9b1d-2f6a8c0e4b7d"

# --- Swagger models ---------------------------------------------------------------------------


def _writable_fields(*, title_required: bool) -> dict[str, fields.Raw]:
    return {
        "title": fields.String(
            required=title_required,
            min_length=1,
            max_length=TITLE_MAX,
            description="What to do; trimmed, 1-200 characters",
            example="Write chapter 2",
        ),
        "description": fields.String(
            max_length=DESCRIPTION_MAX,
            description="Details, up to 5000 characters; null clears it",
            example="Cover pagination, filtering and ETags.",
        ),
        "status": fields.String(
            enum=[s.value for s in Status],
            default=Status.TODO.value,
            description="Lifecycle: todo -> in_progress -> done; blocked and cancelled on the "
            "side; done and cancelled reopen only to todo",
            example=Status.TODO.value,
        ),
        "priority": fields.String(
            enum=[p.value for p in Priority],
            default=Priority.MEDIUM.value,
            description="Sorts by urgency: low < medium < high < urgent",
            example=Priority.HIGH.value,
        ),
        "due_date": fields.String(
            description="ISO 8601 date-time with a time zone; returned in UTC; null clears it",
            example="2026-12-01T17:00:00Z",
        ),
        "tags": fields.List(
            fields.String(max_length=TAG_MAX, pattern=TAG_PATTERN, example="docs"),
            max_items=TAGS_MAX,
            description="Up to 20 labels; trimmed, lower-cased, 1-30 of a-z 0-9 _ -; "
            "duplicates dropped",
            example=["docs", "course"],
        ),
    }


task_input = Model("TaskInput", _writable_fields(title_required=True), strict=True)
task_patch = Model("TaskPatch", _writable_fields(title_required=False), strict=True)

task = Model(
    "Task",
    {
        "id": fields.String(
            readonly=True, description="UUIDv7, assigned by the server", example=_EXAMPLE_ID
        ),
        **_writable_fields(title_required=True),
        "created_at": fields.String(
            readonly=True, description="UTC, set by the server", example="2026-11-26T10:00:00.000Z"
        ),
        "updated_at": fields.String(
            readonly=True,
            description="UTC, set by the server on every change",
            example="2026-11-26T10:00:00.000Z",
        ),
    },
)

task_page = Model(
    "TaskPage",
    {
        "items": fields.List(fields.Nested(task), description="This page's tasks"),
        "page": fields.Integer(description="Page number, from 1", example=1),
        "per_page": fields.Integer(description="Page size (1-100)", example=20),
        "total": fields.Integer(description="Tasks matching the filters", example=42),
        "pages": fields.Integer(description="Number of pages (at least 1)", example=3),
    },
)

bulk_operation = Model(
    "BulkOperation",
    {
        "op": fields.String(
            required=True, enum=["create", "update", "delete"], description="What to do"
        ),
        "id": fields.String(description="Target task (update, delete)", example=_EXAMPLE_ID),
        "task": fields.Nested(task_input, description="The new task (create)"),
        "changes": fields.Nested(task_patch, description="A JSON Merge Patch (update)"),
        "if_match": fields.String(
            description="Optional ETag the target must still have (update, delete)",
            example='"3f786850e387550fdab836ed7e6dc881"',
        ),
    },
)

bulk_request = Model(
    "BulkRequest",
    {
        "operations": fields.List(
            fields.Nested(bulk_operation),
            required=True,
            min_items=1,
            max_items=BULK_MAX_OPERATIONS,
            description="1-100 operations, applied in order, all or none",
            example=[
                {"op": "create", "task": {"title": "Draft outline", "tags": ["docs"]}},
                {"op": "create", "task": {"title": "Review outline", "priority": "high"}},
            ],
        )
    },
)

bulk_result = Model(
    "BulkResult",
    {
        "index": fields.Integer(description="Position in the request", example=0),
        "op": fields.String(enum=["create", "update", "delete"]),
        "status": fields.Integer(
            description="201, 200 or 204, as the single call would", example=201
        ),
        "id": fields.String(example=_EXAMPLE_ID),
        "task": fields.Nested(task, description="The task after the operation (not for delete)"),
    },
)

bulk_response = Model(
    "BulkResponse", {"results": fields.List(fields.Nested(bulk_result), description="In order")}
)

MODELS = (
    task_input,
    task_patch,
    task,
    task_page,
    bulk_operation,
    bulk_request,
    bulk_result,
    bulk_response,
)

# --- Query parameters (documented in Swagger from the same table) --------------------------------

LIST_PARAMS: dict[str, dict[str, Any]] = {
    "page": {"type": "integer", "minimum": 1, "default": 1, "description": "Page number"},
    "per_page": {
        "type": "integer",
        "minimum": 1,
        "maximum": PER_PAGE_MAX,
        "default": PER_PAGE_DEFAULT,
        "description": "Page size, 1-100",
    },
    "status": {
        "type": "array",
        "items": {"type": "string", "enum": [s.value for s in Status]},
        "collectionFormat": "multi",
        "description": "Any of these statuses (repeat, or separate with commas)",
    },
    "priority": {
        "type": "array",
        "items": {"type": "string", "enum": [p.value for p in Priority]},
        "collectionFormat": "multi",
        "description": "Any of these priorities (repeat, or separate with commas)",
    },
    "tag": {
        "type": "array",
        "items": {"type": "string"},
        "collectionFormat": "multi",
        "description": "Tasks carrying every one of these tags",
    },
    "due_after": {
        "type": "string",
        "format": "date-time",
        "description": "Due at or after this ISO 8601 date-time (with time zone)",
    },
    "due_before": {
        "type": "string",
        "format": "date-time",
        "description": "Due before this ISO 8601 date-time (with time zone)",
    },
    "q": {
        "type": "string",
        "maxLength": QUERY_TEXT_MAX,
        "description": "Case-insensitive text to find in title or description",
    },
    "sort": {
        "type": "string",
        "default": "-created_at",
        "description": "Comma-separated fields, '-' for descending: " + ", ".join(SORTABLE_FIELDS),
    },
}
LIST_PARAMS_DOC = {name: {"in": "query", **spec} for name, spec in LIST_PARAMS.items()}


def _int_param(
    args: MultiDict[str, str],
    name: str,
    default: int,
    low: int,
    high: int | None,
    errors: list[dict[str, str]],
) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.append({"parameter": name, "detail": "must be an integer"})
        return default
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        errors.append({"parameter": name, "detail": f"must be {bound}"})
    return value


def _multi(args: MultiDict[str, str], name: str) -> list[str]:
    return [part.strip() for raw in args.getlist(name) for part in raw.split(",") if part.strip()]


def parse_datetime(value: str) -> datetime | None:
    """An aware ISO 8601 date-time in UTC (millisecond precision), or None if invalid/naive."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    parsed = parsed.astimezone(UTC)
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def parse_task_query(args: MultiDict[str, str]) -> TaskQuery:
    """Turn query parameters into a TaskQuery, or raise one 400 problem listing every bad one."""
    errors: list[dict[str, str]] = []
    unknown = sorted(set(args) - set(LIST_PARAMS))
    for name in unknown:
        errors.append({"parameter": name, "detail": "is not a known parameter"})

    page = _int_param(args, "page", 1, 1, None, errors)
    per_page = _int_param(args, "per_page", PER_PAGE_DEFAULT, 1, PER_PAGE_MAX, errors)

    def enums(name: str, enum: type[Status] | type[Priority]) -> frozenset[Any]:
        values = _multi(args, name)
        allowed = [member.value for member in enum]
        if any(v not in allowed for v in values):
            errors.append({"parameter": name, "detail": "must be one of: " + ", ".join(allowed)})
            return frozenset()
        return frozenset(enum(v) for v in values)

    statuses = enums("status", Status)
    priorities = enums("priority", Priority)
    tags = frozenset(t.lower() for t in _multi(args, "tag"))

    bounds: dict[str, datetime | None] = {}
    for name in ("due_after", "due_before"):
        raw = args.get(name)
        bounds[name] = parse_datetime(raw) if raw else None
        if raw and bounds[name] is None:
            errors.append(
                {"parameter": name, "detail": "must be an ISO 8601 date-time with a time zone"}
            )

    text = args.get("q")
    if text is not None and len(text) > QUERY_TEXT_MAX:
        errors.append({"parameter": "q", "detail": f"must be at most {QUERY_TEXT_MAX} characters"})

    sort: list[tuple[str, bool]] = []
    raw_sort = args.get("sort")
    if raw_sort is not None:
        for part in raw_sort.split(","):
            name = part.strip().removeprefix("-")
            if name not in SORTABLE_FIELDS:
                errors.append(
                    {
                        "parameter": "sort",
                        "detail": "can only use: "
                        + ", ".join(SORTABLE_FIELDS)
                        + " ('-' to reverse)",
                    }
                )
                break
            if any(existing == name for existing, _ in sort):
                errors.append({"parameter": "sort", "detail": "names a field twice"})
                break
            sort.append((name, part.strip().startswith("-")))

    if errors:
        raise ValidationProblem(errors, status=400)
    return TaskQuery(
        statuses=statuses,
        priorities=priorities,
        tags=tags,
        due_after=bounds["due_after"],
        due_before=bounds["due_before"],
        text=text or None,
        sort=tuple(sort) if sort else TaskQuery.sort,
        page=page,
        per_page=per_page,
    )


# --- Task documents ----------------------------------------------------------------------------


def _input_schema() -> dict[str, Any]:
    schema = copy.deepcopy(task_input.__schema__)
    for name in _NULLABLE_FIELDS:
        schema["properties"][name]["type"] = [schema["properties"][name]["type"], "null"]
    return schema


_TASK_INPUT_SCHEMA = _input_schema()


def _prefixed(errors: list[dict[str, str]], pointer: str) -> list[dict[str, str]]:
    if pointer == "#":
        return errors
    return [{**e, "pointer": pointer + e["pointer"][1:]} for e in errors]


def task_fields(document: Any, pointer: str = "#") -> dict[str, Any]:
    """Validate and normalise a full task document (create, replace, patched result).

    Returns the writable fields, with defaults filled in, as domain values. Raises one
    ValidationProblem listing every invalid field; ``pointer`` prefixes them (bulk operations).
    """
    if isinstance(document, Mapping):
        document = {k: v for k, v in document.items() if k not in READ_ONLY_FIELDS}
        if isinstance(document.get("title"), str):
            document["title"] = document["title"].strip()
        if isinstance(document.get("tags"), list):
            document["tags"] = [
                t.strip().lower() if isinstance(t, str) else t for t in document["tags"]
            ]
    errors = schema_errors(_TASK_INPUT_SCHEMA, document)
    due_date = None
    if not errors and document.get("due_date") is not None:
        due_date = parse_datetime(document["due_date"])
        if due_date is None:
            errors.append(
                {
                    "pointer": "#/due_date",
                    "detail": "must be an ISO 8601 date-time with a time zone",
                }
            )
    if errors:
        raise ValidationProblem(_prefixed(errors, pointer))
    return {
        "title": document["title"],
        "description": document.get("description"),
        "status": Status(document.get("status", Status.TODO)),
        "priority": Priority(document.get("priority", Priority.MEDIUM)),
        "due_date": due_date,
        "tags": tuple(dict.fromkeys(document.get("tags") or ())),
    }


def iso_utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_document(task: Task) -> dict[str, Any]:
    """The writable fields as JSON values (what a client would send to recreate it)."""
    return {
        "title": task.title,
        "description": task.description,
        "status": task.status.value,
        "priority": task.priority.value,
        "due_date": iso_utc(task.due_date) if task.due_date else None,
        "tags": list(task.tags),
    }


def task_to_dict(task: Task) -> dict[str, Any]:
    """The Task representation, in a fixed key order (ETags hash these bytes)."""
    return {
        "id": str(task.id),
        **task_document(task),
        "created_at": iso_utc(task.created_at),
        "updated_at": iso_utc(task.updated_at),
    }


def parse_task_id(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
