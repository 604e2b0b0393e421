"""``/api/v2/workspaces``: thin resources over the workspace service."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from flask import Response, request
from flask_restx import Namespace
from werkzeug.exceptions import BadRequest

from app.api.models import QUERY_ERROR, json_body_errors, problem, requires
from app.api.pagination import link_header
from app.api.resource import ApiResource
from app.auth.permissions import ANY_CALLER, USERS_ONLY, Action
from app.core.errors import ValidationProblem
from app.core.http_cache import (
    READ_CACHE_CONTROL,
    WRITE_CACHE_CONTROL,
    InvalidPrecondition,
    dump_json,
    etag_of,
    json_response,
    no_content,
    write_precondition,
)
from app.core.validation import JSON, MERGE_PATCH, json_body
from app.tasks.schemas import PER_PAGE_DEFAULT, PER_PAGE_MAX, int_param
from app.workspaces import workspace_service
from app.workspaces.models import Workspace
from app.workspaces.moves import MOVING_DOC, RETRY_AFTER_HEADER
from app.workspaces.schemas import (
    EXAMPLE_WORKSPACE_ID,
    MODELS,
    workspace,
    workspace_input,
    workspace_json,
    workspace_page,
    workspace_to_dict,
)

ns = Namespace(
    "workspaces",
    description="Workspaces (tenants): every task belongs to one; each lives on a shard",
)
for _model in MODELS:
    ns.add_model(_model.name, _model)

_ETAG_HEADER = {"ETag": {"type": "string", "description": "Strong validator of this response"}}
_IF_NONE_MATCH = {
    "If-None-Match": {"in": "header", "type": "string", "description": "304 if it still matches"}
}
_IF_MATCH = {
    "If-Match": {
        "in": "header",
        "type": "string",
        "description": "ETag from an earlier read; 412 if the workspace changed since (optional)",
    }
}
_PAGE_PARAMS = {
    "page": {"in": "query", "type": "integer", "minimum": 1, "default": 1},
    "per_page": {
        "in": "query",
        "type": "integer",
        "minimum": 1,
        "maximum": PER_PAGE_MAX,
        "default": PER_PAGE_DEFAULT,
    },
}


def _precondition() -> Callable[[Workspace], str | None] | None:
    try:
        check = write_precondition()
    except InvalidPrecondition as exc:
        raise BadRequest(f"{exc}.") from None
    if check is None:
        return None
    return lambda current: check(etag_of(workspace_json(current)))


def _workspace_response(item: Workspace, status: int = 200, **headers: str) -> Response:
    read = request.method in {"GET", "HEAD"}
    return json_response(
        encoded=workspace_json(item),
        status=status,
        headers=headers,
        cache_control=READ_CACHE_CONTROL if read else WRITE_CACHE_CONTROL,
    )


@ns.route("")
class WorkspaceCollection(ApiResource):
    query_parameters = {"get": frozenset(_PAGE_PARAMS)}

    @requires(ns, ANY_CALLER)
    @ns.doc(
        "list_workspaces",
        description="The workspaces you are a member of (an API key: its own), oldest first.",
        params=_PAGE_PARAMS,
    )
    @ns.response(200, "One page of workspaces; Link has first/prev/next/last", workspace_page)
    @ns.response(400, "A query parameter is invalid or unknown; errors lists each", problem)
    def get(self) -> Response:
        errors: list[dict[str, str]] = []
        for name in ("page", "per_page"):
            if len(request.args.getlist(name)) > 1:
                errors.append({"parameter": name, "detail": "must be given once"})
        page = int_param(request.args, "page", 1, 1, None, errors)
        per_page = int_param(request.args, "per_page", PER_PAGE_DEFAULT, 1, PER_PAGE_MAX, errors)
        if errors:
            raise ValidationProblem(errors, status=400)
        result = workspace_service().list(page, per_page)
        body = {
            "items": [workspace_to_dict(item) for item in result.items],
            "page": result.page,
            "per_page": result.per_page,
            "total": result.total,
            "pages": result.pages,
        }
        return json_response(
            encoded=dump_json(body), headers={"Link": link_header(result.page, result.pages)}
        )

    @requires(ns, USERS_ONLY)
    @ns.doc(
        "create_workspace",
        description="Create a workspace; it is placed on a shard, and you are its owner. "
        "Signed-in users only (not API keys).",
    )
    @ns.expect(workspace_input)
    @ns.response(
        201,
        "Created; Location points at it",
        workspace,
        headers={**_ETAG_HEADER, "Location": {"type": "string", "description": "The workspace"}},
    )
    @json_body_errors(ns)
    @ns.response(403, "API keys may not create workspaces", problem)
    @ns.response(422, "A field is invalid or unknown; errors lists each", problem)
    def post(self) -> Response:
        created = workspace_service().create(json_body())
        return _workspace_response(created, 201, Location=f"{request.path}/{created.id}")


@ns.route("/<uuid:workspace_id>")
@ns.param(
    "workspace_id",
    "The workspace id (a UUID)",
    format="uuid",
    **{"x-example": EXAMPLE_WORKSPACE_ID},
)
class WorkspaceItem(ApiResource):
    @requires(ns, Action.WORKSPACE_READ)
    @ns.doc("get_workspace", description="One workspace.", params=_IF_NONE_MATCH)
    @ns.response(200, "The workspace", workspace, headers=_ETAG_HEADER)
    @ns.response(304, "Not modified: your If-None-Match still matches")
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(404, "No such workspace (or not yours)", problem)
    def get(self, workspace_id: uuid.UUID) -> Response:
        return _workspace_response(workspace_service().get(workspace_id))

    @requires(ns, Action.WORKSPACE_RENAME)
    @ns.doc(
        "rename_workspace",
        description="Rename: a merge patch with the new name.",
        params=_IF_MATCH,
    )
    @ns.vendor({"x-consumes": [MERGE_PATCH, JSON]})
    @ns.expect(workspace_input)
    @ns.response(200, "The renamed workspace", workspace, headers=_ETAG_HEADER)
    @json_body_errors(ns)
    @ns.response(403, "Only the workspace's owners and admins may rename it", problem)
    @ns.response(404, "No such workspace (or not yours)", problem)
    @ns.response(412, "If-Match no longer matches: the workspace changed", problem)
    @ns.response(422, "A field is invalid or unknown; errors lists each", problem)
    @ns.response(503, MOVING_DOC, problem, headers=RETRY_AFTER_HEADER)
    def patch(self, workspace_id: uuid.UUID) -> Response:
        renamed = workspace_service().rename(
            workspace_id, json_body((MERGE_PATCH, JSON)), precondition=_precondition()
        )
        return _workspace_response(renamed)

    @requires(ns, Action.WORKSPACE_DELETE)
    @ns.doc(
        "delete_workspace",
        description="Delete the workspace and every task in it. There is no undo.",
        params=_IF_MATCH,
    )
    @ns.response(204, "Deleted, with its tasks")
    @ns.response(
        400, "A precondition header is malformed or refused; or an unknown parameter", problem
    )
    @ns.response(403, "Only the workspace's owners may delete it", problem)
    @ns.response(404, "No such workspace (or not yours)", problem)
    @ns.response(409, "The default workspace: API v1 serves it until its sunset", problem)
    @ns.response(412, "If-Match no longer matches: the workspace changed", problem)
    @ns.response(503, MOVING_DOC, problem, headers=RETRY_AFTER_HEADER)
    def delete(self, workspace_id: uuid.UUID) -> Response:
        workspace_service().delete(workspace_id, precondition=_precondition())
        return no_content()
