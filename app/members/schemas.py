"""The membership wire format."""

from __future__ import annotations

from typing import Any

from flask_restx import Model, fields

from app.auth.permissions import Role
from app.members.service import Member
from app.tasks.schemas import iso_utc

_ROLES = [role.value for role in Role]

member_input = Model(
    "MemberInput",
    {
        "email": fields.String(
            required=True,
            max_length=320,
            description="An existing account's email",
            example="grace@example.com",
        ),
        "role": fields.String(required=True, enum=_ROLES, example="member"),
    },
    strict=True,
)

role_input = Model(
    "RoleInput", {"role": fields.String(required=True, enum=_ROLES, example="viewer")}, strict=True
)

member = Model(
    "Member",
    {
        "user_id": fields.String(example="01935f3a-6b1e-7000-8000-0000000000aa"),
        "email": fields.String(example="grace@example.com"),
        "role": fields.String(enum=_ROLES, example="member"),
        "created_at": fields.String(example="2026-11-26T10:00:00.000Z"),
        "updated_at": fields.String(example="2026-11-26T10:00:00.000Z"),
    },
)

member_list = Model("MemberList", {"items": fields.List(fields.Nested(member))})

MODELS = (member_input, role_input, member, member_list)


def member_to_dict(item: Member) -> dict[str, Any]:
    return {
        "user_id": str(item.user_id),
        "email": item.email,
        "role": item.role.value,
        "created_at": iso_utc(item.created_at),
        "updated_at": iso_utc(item.updated_at),
    }
