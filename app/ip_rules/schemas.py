"""The IP list wire format (the deny list and the allow lists share it)."""

from __future__ import annotations

from typing import Any

from flask_restx import Model, fields

from app.ip_rules.service import MAX_NOTE_LENGTH, MIN_DENY_PREFIX, IpRule
from app.tasks.schemas import NullableString, iso_utc

EXAMPLE_RULE_ID = "01935f3a-6b1e-7000-8000-0000000000dd"

_NETWORK_HELP = (
    "CIDR: 203.0.113.0/24, 2001:db8::/32, or one address (a /32 or /128). No host bits; "
    "IPv4-mapped IPv6 networks are stored as IPv4."
)


def _rule_input(name: str, network_help: str, network: str, note: str) -> Model:
    return Model(
        name,
        {
            "network": fields.String(
                required=True,
                min_length=1,
                max_length=64,
                description=network_help,
                example=network,
            ),
            "note": NullableString(
                max_length=MAX_NOTE_LENGTH,
                description="Why the rule is there, for the next person",
                example=note,
            ),
        },
        strict=True,
    )


deny_rule_input = _rule_input(
    "IpDenyRuleInput",
    f"{_NETWORK_HELP} At most an IPv4 /{MIN_DENY_PREFIX[4]} or an IPv6 /{MIN_DENY_PREFIX[6]}; "
    "never your own address.",
    network="203.0.113.0/24",
    note="Credential stuffing",
)
# The example admits a client on this machine: an allow list must contain your own address, so
# "Try it out" against a local server works as it stands.
allow_rule_input = _rule_input(
    "IpAllowRuleInput",
    f"{_NETWORK_HELP} The list, with it, must contain your own address.",
    network="127.0.0.0/8",
    note="This machine",
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

MODELS = (deny_rule_input, allow_rule_input, rule, rule_list)


def rule_to_dict(item: IpRule) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "network": item.network,
        "note": item.note,
        "created_by": str(item.created_by) if item.created_by else None,
        "created_at": iso_utc(item.created_at),
    }
