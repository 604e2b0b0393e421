"""The workspace wire format: Swagger models, validation of a workspace document, JSON shape."""

from __future__ import annotations

import re
from typing import Any

from flask_restx import Model, fields

from app.core.errors import ValidationProblem
from app.core.http_cache import dump_json
from app.core.validation import schema_errors
from app.tasks.schemas import iso_utc
from app.workspaces.models import DEFAULT_WORKSPACE_ID, Workspace, WorkspaceState

NAME_MAX = 100
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
EXAMPLE_WORKSPACE_ID = str(DEFAULT_WORKSPACE_ID)

workspace_input = Model(
    "WorkspaceInput",
    {
        "name": fields.String(
            required=True,
            min_length=1,
            max_length=NAME_MAX,
            description="Shown to people; trimmed; no control characters",
            example="Course project",
        )
    },
    strict=True,  # unknown fields are an error, not silently dropped
)

workspace = Model(
    "Workspace",
    {
        "id": fields.String(description="UUIDv7", example=EXAMPLE_WORKSPACE_ID),
        "name": fields.String(example="Default workspace"),
        "shard": fields.String(description="The database holding its tasks", example="shard-1"),
        "state": fields.String(
            enum=[state.value for state in WorkspaceState],
            description="moving: its data is being copied to another shard; writes wait",
            example="active",
        ),
        "created_at": fields.String(example="2026-11-26T10:00:00.000Z"),
        "updated_at": fields.String(example="2026-11-26T10:00:00.000Z"),
    },
)

workspace_page = Model(
    "WorkspacePage",
    {
        "items": fields.List(fields.Nested(workspace)),
        "page": fields.Integer(example=1),
        "per_page": fields.Integer(example=20),
        "total": fields.Integer(example=1),
        "pages": fields.Integer(example=1),
    },
)

MODELS = (workspace_input, workspace, workspace_page)
_INPUT_SCHEMA = workspace_input.__schema__


def workspace_name(document: Any) -> str:
    """Validate ``{"name": ...}``; the name, trimmed. One 422 problem lists every error."""
    if isinstance(document, dict) and isinstance(document.get("name"), str):
        document = {**document, "name": document["name"].strip()}
    errors = schema_errors(_INPUT_SCHEMA, document)
    if not errors and _CONTROL_CHARACTERS.search(document["name"]):
        errors.append({"pointer": "#/name", "detail": "must not contain control characters"})
    if errors:
        raise ValidationProblem(errors)
    return document["name"]


def workspace_to_dict(item: Workspace) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "name": item.name,
        "shard": item.shard,
        "state": item.state.value,
        "created_at": iso_utc(item.created_at),
        "updated_at": iso_utc(item.updated_at),
    }


def workspace_json(item: Workspace) -> bytes:
    return dump_json(workspace_to_dict(item))
