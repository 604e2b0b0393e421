"""The API key wire format."""

from __future__ import annotations

from typing import Any

from flask_restx import Model, fields

from app.api_keys.service import MAX_LIFETIME_DAYS, MAX_ROTATION_OVERLAP, ApiKey, CreatedKey
from app.tasks.schemas import NullableString, iso_utc

key_input = Model(
    "ApiKeyInput",
    {
        "name": fields.String(required=True, min_length=1, max_length=100, example="CI pipeline"),
        "scopes": fields.List(
            fields.String(enum=["read", "write"]),
            description='["read"] (default) or ["read", "write"]: a viewer or a member',
            example=["read", "write"],
        ),
        "expires_in_days": fields.Integer(
            min=1, max=MAX_LIFETIME_DAYS, description="Omit or null: no expiry", example=90
        ),
    },
    strict=True,
)

rotate_input = Model(
    "ApiKeyRotation",
    {
        "overlap_seconds": fields.Integer(
            min=0,  # flask-restx's names: minimum= and maximum= are silently dropped
            max=MAX_ROTATION_OVERLAP,
            description="How long the old key keeps working (0: revoked at once)",
            example=3600,
        )
    },
    strict=True,
)

api_key = Model(
    "ApiKey",
    {
        "id": fields.String(example="01935f3a-6b1e-7000-8000-0000000000cc"),
        "prefix": fields.String(description="Shown in tm_<prefix>_...", example="k7d2m4qa"),
        "name": fields.String(example="CI pipeline"),
        "scopes": fields.List(fields.String, example=["read", "write"]),
        "created_by": NullableString(description="The user who made it"),
        "created_at": fields.String(example="2026-11-26T10:00:00.000Z"),
        "expires_at": NullableString(description="null: never"),
        "revoked_at": NullableString(description="null: not revoked"),
        "last_used_at": NullableString(description="Within a minute; null: never used"),
    },
)

created_key = Model(
    "CreatedApiKey",
    {
        **api_key,
        "key": fields.String(
            description="The key itself: shown this once, store it now",
            example="tm_k7d2m4qa_...",
        ),
    },
)

key_list = Model("ApiKeyList", {"items": fields.List(fields.Nested(api_key))})

MODELS = (key_input, rotate_input, api_key, created_key, key_list)


def _time(value: Any) -> str | None:
    return iso_utc(value) if value is not None else None


def key_to_dict(item: ApiKey) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "prefix": item.prefix,
        "name": item.name,
        "scopes": list(item.scopes),
        "created_by": str(item.created_by) if item.created_by else None,
        "created_at": iso_utc(item.created_at),
        "expires_at": _time(item.expires_at),
        "revoked_at": _time(item.revoked_at),
        "last_used_at": _time(item.last_used_at),
    }


def created_to_dict(created: CreatedKey) -> dict[str, Any]:
    return {**key_to_dict(created.key), "key": created.secret}
