"""The IP list wire format (the deny list and the allow lists share it)."""

from __future__ import annotations

from typing import Any

from flask_restx import Model, fields

from app.ip_rules.service import MAX_NOTE_LENGTH, IpRule
from app.tasks.schemas import NullableString, iso_utc

EXAMPLE_RULE_ID = "01935f3a-6b1e-7000-8000-0000000000dd"

rule_input = Model(
    "IpRuleInput",
    {
        "network": fields.String(
            required=True,
            min_length=1,
            max_length=64,
            description="CIDR: 203.0.113.0/24, 2001:db8::/32, or one address (a /32 or /128). "
            "No host bits; IPv4-mapped IPv6 networks are stored as IPv4.",
            example="203.0.113.0/24",
        ),
        "note": NullableString(
            max_length=MAX_NOTE_LENGTH,
            description="Why the rule is there, for the next person",
            example="Office VPN",
        ),
    },
    strict=True,
)

rule = Model(
    "IpRule",
    {
        "id": fields.String(example=EXAMPLE_RULE_ID),
        "network": fields.String(description="Normalised CIDR", example="203.0.113.0/24"),
        "note": fields.String(example="Office VPN"),
        "created_by": NullableString(description="The user who added it (null: the system)"),
        "created_at": fields.String(example="2026-11-26T10:00:00.000Z"),
    },
)

rule_list = Model("IpRuleList", {"items": fields.List(fields.Nested(rule))})

MODELS = (rule_input, rule, rule_list)


def rule_to_dict(item: IpRule) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "network": item.network,
        "note": item.note,
        "created_by": str(item.created_by) if item.created_by else None,
        "created_at": iso_utc(item.created_at),
    }
