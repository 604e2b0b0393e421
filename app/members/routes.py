"""``/api/v2/workspaces/{id}/members``: thin resources over the membership service."""

from __future__ import annotations

import uuid

from flask import Response, request
from flask_restx import Namespace

from app.api.models import QUERY_ERROR, json_body_errors, problem, requires
from app.api.resource import ApiResource
from app.auth.permissions import Action
from app.auth.schemas import checked
from app.core.http_cache import WRITE_CACHE_CONTROL, json_response, no_content
from app.core.validation import json_body
from app.members import membership_service
from app.members.schemas import (
    MODELS,
    member,
    member_input,
    member_list,
    member_to_dict,
    role_input,
)
from app.members.service import role_of
from app.workspaces.schemas import EXAMPLE_WORKSPACE_ID

ns = Namespace("members", description="Who belongs to a workspace, and with which role")
for _model in MODELS:
    ns.add_model(_model.name, _model)

_WORKSPACE = {
    "description": "The workspace id",
    "format": "uuid",
    "x-example": EXAMPLE_WORKSPACE_ID,
}
_USER = {"description": "The member's user id", "format": "uuid"}
_NO_WORKSPACE = "No such workspace, or you are not a member of it"
_MANAGERS_ONLY = (
    "Only the workspace's owners and admins manage members, and only owners make, change or "
    "remove owners"
)


@ns.route("")
@ns.param("workspace_id", **_WORKSPACE)
class MemberCollection(ApiResource):
    @requires(ns, Action.MEMBERS_READ)
    @ns.doc("list_members", description="The workspace's members and their roles.")
    @ns.response(200, "The members", member_list)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(404, _NO_WORKSPACE, problem)
    def get(self, workspace_id: uuid.UUID) -> Response:
        members = membership_service().list(workspace_id)
        return json_response({"items": [member_to_dict(item) for item in members]})

    @requires(ns, Action.MEMBERS_MANAGE)
    @ns.doc(
        "add_member",
        description="Add an existing account to the workspace with a role. Owners and admins; "
        "only an owner may add an owner.",
    )
    @ns.expect(member_input)
    @ns.response(201, "Added; Location points at the membership", member)
    @json_body_errors(ns)
    @ns.response(403, _MANAGERS_ONLY, problem)
    @ns.response(404, _NO_WORKSPACE, problem)
    @ns.response(409, "Already a member", problem)
    @ns.response(422, "The email has no account, or the role is unknown", problem)
    def post(self, workspace_id: uuid.UUID) -> Response:
        document = checked(member_input, json_body())
        added = membership_service().add(workspace_id, document["email"], role_of(document))
        return json_response(
            member_to_dict(added),
            status=201,
            headers={"Location": f"{request.path}/{added.user_id}"},
            cache_control=WRITE_CACHE_CONTROL,
            etag=False,
        )


@ns.route("/<uuid:user_id>")
@ns.param("workspace_id", **_WORKSPACE)
@ns.param("user_id", **_USER)
class MemberItem(ApiResource):
    @requires(ns, Action.MEMBERS_READ)
    @ns.doc("get_member", description="One member and their role.")
    @ns.response(200, "The membership", member)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(404, "No such workspace or member (or not yours)", problem)
    def get(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Response:
        return json_response(member_to_dict(membership_service().get(workspace_id, user_id)))

    @requires(ns, Action.MEMBERS_MANAGE)
    @ns.doc(
        "change_member_role",
        description="Change a member's role. The last owner cannot be demoted.",
    )
    @ns.expect(role_input)
    @ns.response(200, "The membership", member)
    @json_body_errors(ns)
    @ns.response(403, _MANAGERS_ONLY, problem)
    @ns.response(404, "No such workspace or member (or not yours)", problem)
    @ns.response(409, "The last owner cannot be demoted", problem)
    @ns.response(422, "The role is unknown", problem)
    def patch(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Response:
        role = role_of(checked(role_input, json_body()))
        changed = membership_service().change_role(workspace_id, user_id, role)
        return json_response(member_to_dict(changed), cache_control=WRITE_CACHE_CONTROL, etag=False)

    @requires(ns, Action.MEMBERS_MANAGE)
    @ns.doc(
        "remove_member",
        description="Remove a member; anyone may remove themselves (leave). The last owner "
        "cannot be removed.",
    )
    @ns.response(204, "Removed")
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(403, _MANAGERS_ONLY, problem)
    @ns.response(404, "No such workspace or member (or not yours)", problem)
    @ns.response(409, "The last owner cannot be removed", problem)
    def delete(self, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Response:
        membership_service().remove(workspace_id, user_id)
        return no_content()
