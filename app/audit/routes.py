"""``/api/v2/workspaces/{workspace_id}/audit`` (query and verify) and a task's history. Read-only:
the audit log has no write, update or delete route; events are written by the writes themselves.

Verify is an admin endpoint (chapter 4 gives it a role): it makes the server hash events, so only
an admin may ask, and at most ``limit`` events per call.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from flask import Response, g, request
from flask_restx import Namespace

from app.api.models import problem, requires
from app.api.resource import ApiResource
from app.audit.schemas import (
    LIST_PARAMS,
    MODELS,
    PAGE_PARAMS,
    VERIFY_PARAMS,
    audit_page,
    audit_verification,
    event_to_dict,
    parse_history_params,
    parse_list_params,
    parse_verify_params,
    verification_to_dict,
)
from app.audit.service import AuditLog, EventPage
from app.audit.tasks import TASK
from app.auth.permissions import Action, allowed
from app.core.http_cache import json_response
from app.db import db
from app.db.shards import shard_session, shards
from app.tasks import task_service
from app.tasks.schemas import EXAMPLE_TASK_ID
from app.workspaces import workspace_service
from app.workspaces.schemas import EXAMPLE_WORKSPACE_ID

ns = Namespace(
    "audit",
    description="The audit log of a workspace: every write's event, field by field, hash-chained "
    "(append-only: there is no route to change or delete an event)",
)
for _model in MODELS:
    ns.add_model(_model.name, _model)

_WORKSPACE_PARAM = {
    "description": "The workspace id (a UUID)",
    "format": "uuid",
    "x-example": EXAMPLE_WORKSPACE_ID,
}
_LINK_HEADER = {"Link": {"type": "string", "description": 'rel="next" when there is a next page'}}


def audit_log(workspace_id: uuid.UUID, action: Action, *, read: bool = True) -> AuditLog:
    """The workspace's events in the control database and in its shard (404 if no workspace).
    ``read``: the shard's read session (a replica when usable), else its primary."""
    access = workspace_service().access(workspace_id, action)
    workspace = access.workspace
    # An address is personal data: shown to those who may read the whole audit log only.
    g.audit_shows_client_ip = access.role is None or allowed(access.role, Action.AUDIT_READ)
    databases = {"control": db.session()}
    registry = shards()
    if registry.engine(workspace.shard) is not registry.control:
        databases[workspace.shard] = shard_session(workspace.shard, read=read)
    return AuditLog(workspace.id, databases)


def _next_url(cursor: str | None, replaced: frozenset[str] = frozenset({"cursor"})) -> str | None:
    """This request's URL with ``cursor`` instead of the parameters it replaces."""
    if cursor is None:
        return None
    others = [(k, v) for k, v in request.args.items(multi=True) if k not in replaced]
    return f"{request.path}?{urlencode([*others, ('cursor', cursor)])}"


def _page_response(page: EventPage) -> Response:
    show_ip = bool(g.get("audit_shows_client_ip"))
    next_url = _next_url(page.next_cursor)
    headers: dict[str, str] = {}
    if next_url is not None:
        headers["Link"] = f'<{next_url}>; rel="next"'
    body = {
        "items": [event_to_dict(event, show_client_ip=show_ip) for event in page.items],
        "next_cursor": page.next_cursor,
        "next": next_url,
    }
    return json_response(body, headers=headers, etag=False)


@ns.route("/audit")
@ns.param("workspace_id", **_WORKSPACE_PARAM)
class AuditEvents(ApiResource):
    query_parameters = {"get": frozenset(LIST_PARAMS)}

    @requires(ns, Action.AUDIT_READ)
    @ns.doc(
        "list_audit_events",
        description="The workspace's audit events, newest first, filtered; cursor-paginated "
        "(follow `next`). Workspace owners and admins.",
        params=LIST_PARAMS,
    )
    @ns.response(200, "One page of events", audit_page, headers=_LINK_HEADER)
    @ns.response(400, "A query parameter is invalid or unknown; errors lists each", problem)
    @ns.response(403, "Only the workspace's owners and admins may read its audit log", problem)
    @ns.response(404, "No such workspace (or not yours)", problem)
    def get(self, workspace_id: uuid.UUID) -> Response:
        query, limit, cursor = parse_list_params(request.args)
        return _page_response(audit_log(workspace_id, Action.AUDIT_READ).list(query, limit, cursor))


@ns.route("/audit/verify")
@ns.param("workspace_id", **_WORKSPACE_PARAM)
class AuditVerification(ApiResource):
    query_parameters = {"get": frozenset(VERIFY_PARAMS)}

    @requires(ns, Action.AUDIT_VERIFY)
    @ns.doc(
        "verify_audit_log",
        description="Workspace owners and admins. Recompute the workspace's hash chains "
        "(control database and shard), at most `limit` events per call: ok, or the first "
        "event that does not verify "
        "and why. Without since/until every chain is checked from its first event; since and "
        "until (event ids, inclusive) check part of the one chain holding them. Follow `next` "
        "until it is null to check the rest: a piece links its first event to the stored hash "
        "of the event before it, so the pieces check what one pass would. A broken chain is a "
        "200 with ok false: the check itself succeeded.",
        params=VERIFY_PARAMS,
    )
    @ns.response(200, "The verification", audit_verification, headers=_LINK_HEADER)
    @ns.response(
        400,
        "A query parameter is invalid or unknown, since or until is not an event of this "
        "workspace, or they are not in order in one chain; errors lists each",
        problem,
    )
    @ns.response(403, "Only the workspace's owners and admins may verify its audit log", problem)
    @ns.response(404, "No such workspace (or not yours)", problem)
    def get(self, workspace_id: uuid.UUID) -> Response:
        limit, since, until, cursor = parse_verify_params(request.args)
        verification = audit_log(workspace_id, Action.AUDIT_VERIFY, read=False).verify(
            limit, since=since, until=until, cursor=cursor
        )
        next_url = _next_url(verification.next_cursor, frozenset({"cursor", "since", "until"}))
        headers = {"Link": f'<{next_url}>; rel="next"'} if next_url is not None else {}
        body = verification_to_dict(verification, next_url)
        return json_response(body, headers=headers, etag=False)


@ns.route("/tasks/<uuid:task_id>/history")
@ns.param("workspace_id", **_WORKSPACE_PARAM)
@ns.param("task_id", "The task id (a UUID)", format="uuid", **{"x-example": EXAMPLE_TASK_ID})
class TaskHistory(ApiResource):
    query_parameters = {"get": frozenset(PAGE_PARAMS)}

    @requires(ns, Action.TASKS_READ)
    @ns.doc(
        "get_task_history",
        description="The task's audit events, oldest first; cursor-paginated. A deleted task "
        "keeps its history. 404 when the task has no events and does not exist.",
        params=PAGE_PARAMS,
    )
    @ns.response(200, "One page of the task's events", audit_page, headers=_LINK_HEADER)
    @ns.response(400, "A query parameter is invalid or unknown; errors lists each", problem)
    @ns.response(404, "No such workspace, or no such task and no history of one", problem)
    def get(self, workspace_id: uuid.UUID, task_id: uuid.UUID) -> Response:
        limit, cursor = parse_history_params(request.args)
        page = audit_log(workspace_id, Action.TASKS_READ).history(TASK, str(task_id), limit, cursor)
        if not page.items and cursor is None:
            task_service(workspace_id).get(
                task_id
            )  # 404 unless it exists (events predating the log)
        return _page_response(page)
