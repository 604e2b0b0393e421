"""``/api/v2/admin/ip-deny-list`` (platform administrators) and
``/api/v2/workspaces/{id}/ip-allow-list`` (a workspace's owners and admins): thin resources over
the IP rule service. The caller's address, which a change may not lock out, is the request's
client (``REMOTE_ADDR`` after the trusted proxies)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, request
from flask_restx import Namespace

from app.api.models import QUERY_ERROR, json_body_errors, problem, requires
from app.api.resource import ApiResource
from app.auth.permissions import PLATFORM_ADMIN, Action
from app.core.admin import BEARER, platform_admin_only, require_platform_admin
from app.core.http_cache import WRITE_CACHE_CONTROL, json_response, no_content
from app.core.validation import json_body
from app.ip_rules import invalidate_deny_list, ip_rule_service
from app.ip_rules.schemas import (
    EXAMPLE_RULE_ID,
    MODELS,
    allow_rule_input,
    deny_rule_input,
    rule,
    rule_list,
    rule_to_dict,
)
from app.ip_rules.service import (
    IP_RULES_REFRESH,
    MAX_ALLOW_RULES,
    MAX_DENY_RULES,
    MIN_DENY_PREFIX,
    IpRule,
)
from app.workspaces.schemas import EXAMPLE_WORKSPACE_ID

ns_admin = Namespace(
    "ip-deny-list",
    description="The platform's IP deny list: requests from these networks are refused "
    "everything (platform administrators only: to anyone else these answer 404).",
)
ns_workspace = Namespace(
    "ip-allow-list",
    description="A workspace's IP allow list: once it has a rule, only those networks reach "
    "the workspace; removing the last rule turns it off.",
)
for _ns in (ns_admin, ns_workspace):
    for _model in MODELS:
        _ns.add_model(_model.name, _model)

_WORKSPACE: dict[str, Any] = {"description": "The workspace id", "format": "uuid"}
_WORKSPACE["x-example"] = EXAMPLE_WORKSPACE_ID
_RULE: dict[str, Any] = {"description": "The rule's id", "format": "uuid"}
_RULE["x-example"] = EXAMPLE_RULE_ID
_NO_ADMIN = "You are not a platform administrator: these endpoints do not exist for you"
_MANAGERS = (
    "Only the workspace's owners and admins, signed in (not with a key), manage the list; "
    "or your address is not on the workspace's allow list"
)
_NO_WORKSPACE = "No such workspace, or you are not a member of it"
_INVALID = "A field is invalid or unknown (errors lists each)"
_WITHIN = f"within {IP_RULES_REFRESH:g} seconds"


def _caller_address() -> str | None:
    return request.remote_addr


def _created(item: IpRule) -> Response:
    return json_response(
        rule_to_dict(item),
        status=201,
        headers={"Location": f"{request.path}/{item.id}"},
        cache_control=WRITE_CACHE_CONTROL,
        etag=False,
    )


# --- The platform's deny list --------------------------------------------------------------------


@platform_admin_only
class DenyListResource(ApiResource):
    """The admin check runs first, before the unknown-parameter check: to anyone but a platform
    administrator these endpoints look exactly like no endpoint at all."""

    def dispatch_request(self, *args: Any, **kwargs: Any) -> Any:
        require_platform_admin()
        return super().dispatch_request(*args, **kwargs)


def _admin_doc(not_found: str = _NO_ADMIN) -> Any:
    def document(operation: Any) -> Any:
        operation = ns_admin.response(404, not_found, problem)(operation)
        return ns_admin.doc(security=BEARER)(operation)

    return document


@ns_admin.route("")
class DenyRuleCollection(DenyListResource):
    @requires(ns_admin, PLATFORM_ADMIN)
    @ns_admin.doc("list_ip_deny_rules", description="Every rule of the deny list, oldest first.")
    @ns_admin.response(200, "The rules", rule_list)
    @ns_admin.response(400, QUERY_ERROR, problem)
    @_admin_doc()
    def get(self) -> Response:
        items = [rule_to_dict(item) for item in ip_rule_service().list_denied()]
        return json_response({"items": items}, cache_control=WRITE_CACHE_CONTROL)

    @requires(ns_admin, PLATFORM_ADMIN)
    @ns_admin.doc(
        "add_ip_deny_rule",
        description="Refuse a network everything, authentication included. Every worker "
        f"applies the change {_WITHIN}. IPv4 rules /{MIN_DENY_PREFIX[4]} or narrower, IPv6 "
        f"/{MIN_DENY_PREFIX[6]} or narrower; a rule may not cover your own address.",
    )
    @ns_admin.expect(deny_rule_input)
    @ns_admin.response(201, "Added; Location points at the rule", rule)
    @json_body_errors(ns_admin)
    @_admin_doc()
    @ns_admin.response(
        409, f"The network is on the list already, or the list is full ({MAX_DENY_RULES})", problem
    )
    @ns_admin.response(
        422,
        f"{_INVALID}; or the network is too broad, or covers your own address (ip-list-lockout)",
        problem,
    )
    def post(self) -> Response:
        created = ip_rule_service().deny(json_body(), _caller_address())
        invalidate_deny_list(current_app)  # this worker at once, the others within the refresh
        return _created(created)


@ns_admin.route("/<uuid:rule_id>")
@ns_admin.param("rule_id", **_RULE)
class DenyRuleItem(DenyListResource):
    @requires(ns_admin, PLATFORM_ADMIN)
    @ns_admin.doc(
        "remove_ip_deny_rule",
        description=f"Remove a rule: its network is served again {_WITHIN}.",
    )
    @ns_admin.response(204, "Removed")
    @ns_admin.response(400, QUERY_ERROR, problem)
    @_admin_doc("No such rule; or you are not a platform administrator")
    def delete(self, rule_id: uuid.UUID) -> Response:
        ip_rule_service().remove_denied(rule_id)
        invalidate_deny_list(current_app)
        return no_content()


# --- A workspace's allow list --------------------------------------------------------------------


@ns_workspace.route("")
@ns_workspace.param("workspace_id", **_WORKSPACE)
class AllowRuleCollection(ApiResource):
    @requires(ns_workspace, Action.IP_ALLOW_LIST_MANAGE)
    @ns_workspace.doc(
        "list_ip_allow_rules",
        description="The workspace's allow list, oldest first; empty: the list is off and "
        "every address may reach the workspace.",
    )
    @ns_workspace.response(200, "The rules", rule_list)
    @ns_workspace.response(400, QUERY_ERROR, problem)
    @ns_workspace.response(403, _MANAGERS, problem)
    @ns_workspace.response(404, _NO_WORKSPACE, problem)
    def get(self, workspace_id: uuid.UUID) -> Response:
        items = [rule_to_dict(item) for item in ip_rule_service().list_allowed(workspace_id)]
        return json_response({"items": items})

    @requires(ns_workspace, Action.IP_ALLOW_LIST_MANAGE)
    @ns_workspace.doc(
        "add_ip_allow_rule",
        description="Allow a network. The first rule turns the list on: from then on only "
        "listed networks reach the workspace (users, keys and tokens alike), so the list must "
        "contain your own address.",
    )
    @ns_workspace.expect(allow_rule_input)
    @ns_workspace.response(201, "Added; Location points at the rule", rule)
    @json_body_errors(ns_workspace)
    @ns_workspace.response(403, _MANAGERS, problem)
    @ns_workspace.response(404, _NO_WORKSPACE, problem)
    @ns_workspace.response(
        409,
        f"The network is on the list already, or the list is full ({MAX_ALLOW_RULES})",
        problem,
    )
    @ns_workspace.response(
        422, f"{_INVALID}; or the list would not contain your address (ip-list-lockout)", problem
    )
    def post(self, workspace_id: uuid.UUID) -> Response:
        return _created(ip_rule_service().allow(workspace_id, json_body(), _caller_address()))


@ns_workspace.route("/<uuid:rule_id>")
@ns_workspace.param("workspace_id", **_WORKSPACE)
@ns_workspace.param("rule_id", **_RULE)
class AllowRuleItem(ApiResource):
    @requires(ns_workspace, Action.IP_ALLOW_LIST_MANAGE)
    @ns_workspace.doc(
        "remove_ip_allow_rule",
        description="Remove a rule. Removing the last one turns the list off (every address "
        "allowed); otherwise the rules left must contain your own address.",
    )
    @ns_workspace.response(204, "Removed")
    @ns_workspace.response(400, QUERY_ERROR, problem)
    @ns_workspace.response(403, _MANAGERS, problem)
    @ns_workspace.response(404, "No such workspace or rule (or not yours)", problem)
    @ns_workspace.response(
        422, "The rules left would not contain your address (ip-list-lockout)", problem
    )
    def delete(self, workspace_id: uuid.UUID, rule_id: uuid.UUID) -> Response:
        ip_rule_service().remove_allowed(workspace_id, rule_id, _caller_address())
        return no_content()
