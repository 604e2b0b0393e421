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
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from flask_restx import Model, fields
from werkzeug.datastructures import MultiDict

from app.core.errors import ValidationProblem
from app.core.http_cache import dump_json
from app.core.validation import schema_errors, shortened
from app.tasks.models import Priority, Status, Task
from app.tasks.repository import SORTABLE_FIELDS, Page, TaskQuery

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

# A seeded demo task ("Try the Swagger UI"), so "Try it out" finds it against ./scripts/run.
EXAMPLE_TASK_ID = "01a19b7d-90e0-7ced-8f5b-e2db23a6513e"

# --- Swagger models ---------------------------------------------------------------------------


class NullableString(fields.String):
    """A string that may be null. Swagger 2.0 cannot say so natively; ``x-nullable`` is the
    extension tools (and our spec test) understand."""

    def schema(self) -> dict[str, Any]:
        return {**super().schema(), "x-nullable": True}


class NullableList(fields.List):
    def schema(self) -> dict[str, Any]:
        return {**super().schema(), "x-nullable": True}


class NullableNested(fields.Nested):
    def schema(self) -> dict[str, Any]:
        return {**super().schema(), "x-nullable": True}


def _writable_fields(*, patch: bool) -> dict[str, fields.Raw]:
    """The writable fields; for a merge patch nothing is required and tags may be null."""
    tags_field = NullableList if patch else fields.List
    return {
        "title": fields.String(
            required=not patch,
            min_length=1,
            max_length=TITLE_MAX,
            description="What to do; trimmed, 1-200 characters",
            example="Write chapter 2",
        ),
        "description": NullableString(
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
        "due_date": NullableString(
            description="ISO 8601 date-time with a time zone; returned in UTC; null clears it",
            example="2026-12-01T17:00:00Z",
        ),
        "tags": tags_field(
            fields.String(max_length=TAG_MAX, pattern=TAG_PATTERN, example="docs"),
            max_items=TAGS_MAX,
            description="Up to 20 labels; trimmed, lower-cased, 1-30 of a-z 0-9 _ -; "
            "duplicates dropped",
            example=["docs", "course"],
        ),
    }


task_input = Model("TaskInput", _writable_fields(patch=False), strict=True)
task_patch = Model("TaskPatch", _writable_fields(patch=True), strict=True)

task = Model(
    "Task",
    {
        "id": fields.String(
            readonly=True, description="UUIDv7, assigned by the server", example=EXAMPLE_TASK_ID
        ),
        **_writable_fields(patch=False),
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
        "id": fields.String(description="Target task (update, delete)", example=EXAMPLE_TASK_ID),
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
        "id": fields.String(example=EXAMPLE_TASK_ID),
        "task": NullableNested(task, description="The task after the operation; null for delete"),
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
_SINGLE_VALUED = [name for name, spec in LIST_PARAMS.items() if spec["type"] != "array"]


_INTEGER = re.compile(r"-?[0-9]+")


def int_param(
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
    # int() would also take " 2", "1_0" and other scripts' digits ("\u0661"): a URL parameter
    # is ASCII digits, nothing else. Past 18 digits a number is over any limit anyway, and is
    # not worth converting.
    if _INTEGER.fullmatch(raw) is None:
        errors.append({"parameter": name, "detail": "must be an integer (ASCII digits)"})
        return default
    value = int(raw) if len(raw.lstrip("-")) <= 18 else (-1 if raw[0] == "-" else 1) * 10**18
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        errors.append({"parameter": name, "detail": f"must be {bound}"})
    return value


def _multi(args: MultiDict[str, str], name: str) -> list[str]:
    return [part.strip() for raw in args.getlist(name) for part in raw.split(",") if part.strip()]


DATETIME_RULE = "must be an ISO 8601 date-time with a time zone, in the years 1900-9999"


def parse_datetime(value: str) -> datetime | None:
    """An aware ISO 8601 date-time in UTC (millisecond precision), or None if invalid, naive or
    out of range (near year 1 or 9999 the conversion to UTC itself overflows)."""
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            return None
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if parsed.year < 1900:
        return None
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def parse_task_query(args: MultiDict[str, str]) -> TaskQuery:
    """Turn query parameters into a TaskQuery, or raise one 400 problem listing every bad one."""
    errors: list[dict[str, str]] = []
    unknown = sorted(set(args) - set(LIST_PARAMS))
    for name in unknown:
        errors.append({"parameter": shortened(name), "detail": "is not a known parameter"})
    for name in _SINGLE_VALUED:  # ?page=1&page=abc must not quietly mean page 1
        if len(args.getlist(name)) > 1:
            errors.append({"parameter": name, "detail": "must be given once"})

    page = int_param(args, "page", 1, 1, None, errors)
    per_page = int_param(args, "per_page", PER_PAGE_DEFAULT, 1, PER_PAGE_MAX, errors)

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
            errors.append({"parameter": name, "detail": DATETIME_RULE})

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


def _with_nullable(schema: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    for name in names:
        schema["properties"][name]["type"] = [schema["properties"][name]["type"], "null"]
    return schema


_TASK_INPUT_SCHEMA = _with_nullable(task_input.__schema__, _NULLABLE_FIELDS)
# In a merge patch null means "remove": allowed where removing leaves a valid task.
_TASK_PATCH_SCHEMA = _with_nullable(task_patch.__schema__, (*_NULLABLE_FIELDS, "tags"))
_NOT_REMOVABLE = ("title", "status", "priority")

# Control characters have no place in a title; a description may keep tabs and line breaks.
_TITLE_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_DESCRIPTION_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _prefixed(errors: list[dict[str, str]], pointer: str) -> list[dict[str, str]]:
    if pointer == "#":
        return errors
    return [{**e, "pointer": pointer + e["pointer"][1:]} for e in errors]


def _normalised(document: Any) -> Any:
    """Drop read-only fields, trim the title, trim and lower-case tags; bound what validation
    will walk (a list far over the limit only needs to be reported once)."""
    if not isinstance(document, Mapping):
        return document
    document = {k: v for k, v in document.items() if k not in READ_ONLY_FIELDS}
    if isinstance(document.get("title"), str):
        document["title"] = document["title"].strip()
    tags = document.get("tags")
    if isinstance(tags, list):
        document["tags"] = [t.strip().lower() if isinstance(t, str) else t for t in tags]
        del document["tags"][TAGS_MAX + 1 :]  # still over the limit, so still reported
    return document


def _content_errors(document: Mapping[str, Any]) -> list[dict[str, str]]:
    errors = []
    if isinstance(document.get("title"), str) and _TITLE_FORBIDDEN.search(document["title"]):
        errors.append({"pointer": "#/title", "detail": "must not contain control characters"})
    description = document.get("description")
    if isinstance(description, str) and _DESCRIPTION_FORBIDDEN.search(description):
        errors.append(
            {
                "pointer": "#/description",
                "detail": "must not contain control characters other than tab and line breaks",
            }
        )
    if isinstance(document.get("due_date"), str) and parse_datetime(document["due_date"]) is None:
        errors.append({"pointer": "#/due_date", "detail": DATETIME_RULE})
    return errors


def check_patch(changes: Any, pointer: str = "#") -> None:
    """Validate a merge patch on its own (types, bounds, nulls), before any task is touched, so
    a bad patch is refused without waiting for, or holding, the store."""
    document = _normalised(changes)
    errors: list[dict[str, str]] = []
    if isinstance(document, Mapping):
        removed = [name for name in _NOT_REMOVABLE if name in document and document[name] is None]
        errors += [
            {"pointer": f"#/{name}", "detail": "cannot be null: it is required"} for name in removed
        ]
        document = {k: v for k, v in document.items() if k not in removed}
        errors += _content_errors(document)
    errors += schema_errors(_TASK_PATCH_SCHEMA, document)
    if errors:
        raise ValidationProblem(_prefixed(sorted(errors, key=lambda e: e["pointer"]), pointer))


def task_fields(document: Any, pointer: str = "#") -> dict[str, Any]:
    """Validate and normalise a full task document (create, replace, patched result).

    Returns the writable fields, with defaults filled in, as domain values. Raises one
    ValidationProblem listing every invalid field; ``pointer`` prefixes them (bulk operations).
    """
    document = _normalised(document)
    errors = schema_errors(_TASK_INPUT_SCHEMA, document)
    if isinstance(document, Mapping):
        errors += _content_errors(document)
    if errors:
        raise ValidationProblem(_prefixed(sorted(errors, key=lambda e: e["pointer"]), pointer))
    due_date = document.get("due_date")
    return {
        "title": document["title"],
        "description": document.get("description"),
        "status": Status(document.get("status", Status.TODO)),
        "priority": Priority(document.get("priority", Priority.MEDIUM)),
        "due_date": parse_datetime(due_date) if due_date is not None else None,
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


@lru_cache(maxsize=2048)  # bounded: about 1 MB for typical tasks, 30 MB at the very worst
def task_json(task: Task) -> bytes:
    """The task's JSON bytes, as ``dump_json(task_to_dict(task))``. Cached because a Task is an
    immutable value and list pages send the same tasks again and again; a changed task is a new
    value, hence a new cache entry, so nothing stale is ever served."""
    return dump_json(task_to_dict(task))


def task_page_json(page: Page) -> bytes:
    """A page envelope's bytes, built from the cached task bytes (same bytes as dump_json of the
    whole dict: ``{"items":[...],"page":...}``)."""
    items = b",".join(task_json(item) for item in page.items)
    rest = dump_json(
        {"page": page.page, "per_page": page.per_page, "total": page.total, "pages": page.pages}
    )
    return b'{"items":[' + items + b"]," + rest[1:]


def parse_task_id(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
