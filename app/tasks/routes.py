"""Tasks of a workspace, ``/api/v2/workspaces/{workspace_id}/tasks``, and the same resources at
``/api/v1/tasks`` (deprecated: the default workspace). Thin resources: parse and validate, call
the service, shape the response."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any

from flask import Response, request
from flask_restx import Namespace
from werkzeug.exceptions import BadRequest

from app.api.models import QUERY_ERROR, json_body_errors, problem, requires
from app.api.pagination import link_header
from app.api.resource import ApiResource
from app.api.versioning import deprecated_copy
from app.auth.permissions import Action
from app.core.errors import ValidationProblem
from app.core.http_cache import (
    READ_CACHE_CONTROL,
    WRITE_CACHE_CONTROL,
    ETagCheck,
    InvalidPrecondition,
    etag_of,
    if_match_check,
    json_response,
    no_content,
    not_modified,
    still_fresh,
    write_precondition,
)
from app.core.validation import JSON, MERGE_PATCH, json_body, schema_errors
from app.tasks import task_service
from app.tasks.models import Task
from app.tasks.repository import TaskStamp
from app.tasks.schemas import (
    BULK_MAX_OPERATIONS,
    EXAMPLE_TASK_ID,
    LIST_PARAMS_DOC,
    MODELS,
    bulk_request,
    bulk_response,
    parse_task_id,
    parse_task_query,
    task,
    task_input,
    task_json,
    task_page,
    task_page_json,
    task_patch,
    task_to_dict,
)
from app.tasks.service import BulkOperation, BulkResult, Precondition
from app.workspaces.models import DEFAULT_WORKSPACE_ID
from app.workspaces.moves import MOVING_DOC, RETRY_AFTER_HEADER

ns = Namespace(
    "tasks",
    description="A workspace's tasks: CRUD, filtering, sorting, pagination, bulk changes, ETags "
    "(If-None-Match for 304, If-Match for optimistic concurrency)",
)
NO_WORKSPACE = "No such workspace, or you are not a member of it"
FORBIDDEN_WRITE = "Your role (viewer) or your key (read scope) may not write tasks"

ns_v1 = Namespace(
    "tasks (v1)",
    description="Deprecated: API v1 has no workspaces and serves the default workspace's tasks. "
    "Use the v2 tasks of a workspace; responses carry Deprecation and Sunset headers.",
)
for _model in MODELS:
    ns.add_model(_model.name, _model)
    ns_v1.add_model(_model.name, _model)

_WORKSPACE = DEFAULT_WORKSPACE_ID  # v1 URLs name no workspace

_ETAG_HEADER = {"ETag": {"type": "string", "description": "Strong validator of this response"}}
_IF_NONE_MATCH_PARAM = {
    "If-None-Match": {
        "in": "header",
        "type": "string",
        "description": "ETag from an earlier read; 304 with no body if it still matches",
    }
}
_WRITE_PRECONDITION_PARAMS = {
    "If-Match": {
        "in": "header",
        "type": "string",
        "description": "ETag from an earlier read; 412 if the task changed since (optional; "
        "strong comparison, so a weak W/ tag never matches)",
    },
    "If-None-Match": {
        "in": "header",
        "type": "string",
        "description": "Optional: 412 if it is * (the task exists) or matches the current ETag. "
        "If-Unmodified-Since is refused (400): use If-Match.",
    },
}


# Part of every task ETag. Change it when the task representation changes shape (a field added,
# renamed or formatted differently): the stored versions do not change then, the ETags must.
_TASK_REPRESENTATION = "task/1"


def stamp_etag(task_id: uuid.UUID, stamp: TaskStamp) -> str:
    """A task's ETag from what changes with every write: its version, and its updated_at (a
    restored backup can bring an old version number back; not with the same updated_at).
    Strong: equal ETags mean equal bytes, because the representation is a function of the
    stored row, and the row's version changes with every write."""
    updated = stamp.updated_at.astimezone(UTC).isoformat()
    return etag_of(f"{_TASK_REPRESENTATION}:{task_id}:{stamp.version}:{updated}".encode())


def task_etag(item: Task) -> str:
    """The ETag a GET of this task returns (and If-Match compares with)."""
    return stamp_etag(item.id, TaskStamp(item.version, item.updated_at))


def _etag_check(check: ETagCheck) -> Precondition:
    return lambda current: check(task_etag(current))


def _precondition() -> Precondition | None:
    try:
        check = write_precondition()
    except InvalidPrecondition as exc:
        raise BadRequest(f"{exc}.") from None
    return None if check is None else _etag_check(check)


def _task_response(item: Task, status: int = 200, **headers: str) -> Response:
    read = request.method in {"GET", "HEAD"}
    cache_control = READ_CACHE_CONTROL if read else WRITE_CACHE_CONTROL
    return json_response(
        encoded=task_json(item),
        status=status,
        headers=headers,
        cache_control=cache_control,
        etag=task_etag(item),
    )


# The workspace in v2 URLs; v1's deprecated copies (below) leave it out.
_WORKSPACE_PARAM = {
    "description": "The workspace id (a UUID)",
    "format": "uuid",
    "x-example": str(DEFAULT_WORKSPACE_ID),
}


@ns.route("")
@ns.param("workspace_id", **_WORKSPACE_PARAM)
class TaskCollection(ApiResource):
    query_parameters = {"get": frozenset(LIST_PARAMS_DOC)}

    @requires(ns, Action.TASKS_READ)
    @ns.doc(
        "list_tasks",
        description="Filter, sort and page through tasks.",
        params={**LIST_PARAMS_DOC, **_IF_NONE_MATCH_PARAM},
    )
    @ns.response(
        200,
        "One page of tasks; Link has first/prev/next/last",
        task_page,
        headers={**_ETAG_HEADER, "Link": {"type": "string", "description": "RFC 8288"}},
    )
    @ns.response(304, "Not modified: your If-None-Match still matches")
    @ns.response(400, "A query parameter is invalid or unknown; errors lists each", problem)
    @ns.response(404, NO_WORKSPACE, problem)
    def get(self, workspace_id: uuid.UUID = _WORKSPACE) -> Response:
        page = task_service(workspace_id).list(parse_task_query(request.args))
        return json_response(
            encoded=task_page_json(page), headers={"Link": link_header(page.page, page.pages)}
        )

    @requires(ns, Action.TASKS_WRITE)
    @ns.doc(
        "create_task",
        description="Create a task. Read-only fields are ignored. It may start in any status "
        "(default todo), so imported tasks keep theirs; the lifecycle governs later changes.",
    )
    @ns.expect(task_input)
    @ns.response(
        201,
        "Created; Location points at it",
        task,
        headers={**_ETAG_HEADER, "Location": {"type": "string", "description": "The new task"}},
    )
    @json_body_errors(ns)
    @ns.response(403, FORBIDDEN_WRITE, problem)
    @ns.response(404, NO_WORKSPACE, problem)
    @ns.response(422, "A field is invalid or unknown; errors lists each", problem)
    @ns.response(503, MOVING_DOC, problem, headers=RETRY_AFTER_HEADER)
    def post(self, workspace_id: uuid.UUID = _WORKSPACE) -> Response:
        created = task_service(workspace_id).create(json_body())
        return _task_response(created, 201, Location=f"{request.path}/{created.id}")


@ns.route("/<uuid:task_id>")  # anything else is not a task id: routing answers 404 (or 405)
@ns.param("workspace_id", **_WORKSPACE_PARAM)
@ns.param(
    "task_id",
    "The task id (a UUID)",
    format="uuid",
    **{"x-example": EXAMPLE_TASK_ID},
)
class TaskItem(ApiResource):
    @requires(ns, Action.TASKS_READ)
    @ns.doc(
        "get_task",
        description="One task. Send If-None-Match with its ETag to get 304.",
        params=_IF_NONE_MATCH_PARAM,
    )
    @ns.response(200, "The task", task, headers=_ETAG_HEADER)
    @ns.response(304, "Not modified: your If-None-Match still matches")
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(404, "No such task (or workspace, or not yours)", problem)
    def get(self, task_id: uuid.UUID, workspace_id: uuid.UUID = _WORKSPACE) -> Response:
        service = task_service(workspace_id)
        if "If-None-Match" in request.headers:
            # The stored version decides: a 304 reads two columns and builds no body.
            etag = stamp_etag(task_id, service.stamp(task_id))
            if still_fresh(etag):
                return not_modified(etag)
        return _task_response(service.get(task_id))

    @requires(ns, Action.TASKS_WRITE)
    @ns.doc(
        "replace_task",
        description="Replace every writable field (omitted ones reset to "
        "their defaults). Read-only fields are ignored.",
    )
    @ns.doc(params=_WRITE_PRECONDITION_PARAMS)
    @ns.expect(task_input)
    @ns.response(200, "The replaced task", task, headers=_ETAG_HEADER)
    @json_body_errors(ns)
    @ns.response(403, FORBIDDEN_WRITE, problem)
    @ns.response(404, "No such task (or workspace, or not yours)", problem)
    @ns.response(409, "The status change is not allowed by the lifecycle", problem)
    @ns.response(412, "If-Match no longer matches: the task changed", problem)
    @ns.response(422, "A field is invalid or unknown; errors lists each", problem)
    @ns.response(503, MOVING_DOC, problem, headers=RETRY_AFTER_HEADER)
    def put(self, task_id: uuid.UUID, workspace_id: uuid.UUID = _WORKSPACE) -> Response:
        replaced = task_service(workspace_id).replace(
            task_id, json_body(), precondition=_precondition()
        )
        return _task_response(replaced)

    @requires(ns, Action.TASKS_WRITE)
    @ns.doc(
        "patch_task",
        description="JSON Merge Patch (RFC 7396): send only what changes; "
        "null clears description, due_date or tags. Content-Type application/merge-patch+json "
        "or application/json.",
    )
    @ns.doc(params=_WRITE_PRECONDITION_PARAMS)
    @ns.vendor({"x-consumes": [MERGE_PATCH, JSON]})
    @ns.expect(task_patch)
    @ns.response(200, "The updated task", task, headers=_ETAG_HEADER)
    @json_body_errors(ns)
    @ns.response(403, FORBIDDEN_WRITE, problem)
    @ns.response(404, "No such task (or workspace, or not yours)", problem)
    @ns.response(409, "The status change is not allowed by the lifecycle", problem)
    @ns.response(412, "If-Match no longer matches: the task changed", problem)
    @ns.response(422, "A field is invalid or unknown; errors lists each", problem)
    @ns.response(503, MOVING_DOC, problem, headers=RETRY_AFTER_HEADER)
    def patch(self, task_id: uuid.UUID, workspace_id: uuid.UUID = _WORKSPACE) -> Response:
        patched = task_service(workspace_id).patch(
            task_id, json_body((MERGE_PATCH, JSON)), precondition=_precondition()
        )
        return _task_response(patched)

    @requires(ns, Action.TASKS_WRITE)
    @ns.doc("delete_task", description="Delete a task.")
    @ns.doc(params=_WRITE_PRECONDITION_PARAMS)
    @ns.response(204, "Deleted")
    @ns.response(
        400, "If-Match or If-None-Match is malformed, or a query parameter is unknown", problem
    )
    @ns.response(403, FORBIDDEN_WRITE, problem)
    @ns.response(404, "No such task (or workspace, or not yours)", problem)
    @ns.response(412, "If-Match no longer matches: the task changed", problem)
    @ns.response(503, MOVING_DOC, problem, headers=RETRY_AFTER_HEADER)
    def delete(self, task_id: uuid.UUID, workspace_id: uuid.UUID = _WORKSPACE) -> Response:
        task_service(workspace_id).delete(task_id, precondition=_precondition())
        return no_content()


_BULK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["operations"],
    "additionalProperties": False,
    "properties": {
        "operations": {
            "type": "array",
            "minItems": 1,
            "maxItems": BULK_MAX_OPERATIONS,
            "items": {
                "type": "object",
                "required": ["op"],
                "additionalProperties": False,
                "properties": {
                    "op": {"enum": ["create", "update", "delete"]},
                    "id": {"type": "string"},
                    "task": {"type": "object"},
                    "changes": {"type": "object"},
                    "if_match": {"type": "string", "maxLength": 1000},
                },
            },
        }
    },
}
# Which members each kind of operation needs, and which it must not have.
_BULK_SHAPE = {
    "create": ({"task"}, {"id", "changes", "if_match"}),
    "update": ({"id", "changes"}, {"task"}),
    "delete": ({"id"}, {"task", "changes"}),
}


def _bulk_operations(body: Any) -> list[BulkOperation]:
    """Check the envelope and each operation's shape; field values are the service's job."""
    errors = schema_errors(_BULK_SCHEMA, body)
    if errors:
        raise ValidationProblem(errors)
    operations: list[BulkOperation] = []
    for index, raw in enumerate(body["operations"]):
        at = f"#/operations/{index}"
        required, forbidden = _BULK_SHAPE[raw["op"]]
        errors += [
            {"pointer": f"{at}/{name}", "detail": "is required"}
            for name in sorted(required - raw.keys())
        ]
        errors += [
            {"pointer": f"{at}/{name}", "detail": f"is not allowed for {raw['op']}"}
            for name in sorted(forbidden & raw.keys())
        ]
        task_id = parse_task_id(raw["id"]) if "id" in raw else None
        if "id" in raw and task_id is None:
            errors.append({"pointer": f"{at}/id", "detail": "must be a UUID"})
        check = None
        if "if_match" in raw:
            try:
                check = if_match_check(raw["if_match"])
            except InvalidPrecondition as exc:
                errors.append({"pointer": f"{at}/if_match", "detail": str(exc)})
        operations.append(
            BulkOperation(
                op=raw["op"],
                task_id=task_id,
                document=raw.get("task", raw.get("changes")),
                precondition=None if check is None else _etag_check(check),
            )
        )
    if errors:
        raise ValidationProblem(errors)
    return operations


def _bulk_result(result: BulkResult) -> dict[str, Any]:
    return {
        "index": result.index,
        "op": result.op,
        "status": result.status,
        "id": str(result.task_id),
        "task": task_to_dict(result.task) if result.task is not None else None,
    }


@ns.route("/bulk")
@ns.param("workspace_id", **_WORKSPACE_PARAM)
class TaskBulk(ApiResource):
    @requires(ns, Action.TASKS_WRITE)
    @ns.doc(
        "bulk_tasks",
        description="Up to 100 create/update/delete operations, applied in order and atomically: "
        "if one fails, none is applied and the problem lists every failing operation.",
    )
    @ns.expect(bulk_request)
    @ns.response(200, "Every operation applied; one result each, in order", bulk_response)
    @json_body_errors(ns)
    @ns.response(403, FORBIDDEN_WRITE, problem)
    @ns.response(404, NO_WORKSPACE, problem)
    @ns.response(422, "The request or an operation is invalid; nothing was applied", problem)
    @ns.response(503, MOVING_DOC, problem, headers=RETRY_AFTER_HEADER)
    def post(self, workspace_id: uuid.UUID = _WORKSPACE) -> Response:
        results = task_service(workspace_id).bulk(_bulk_operations(json_body()))
        return json_response(
            {"results": [_bulk_result(r) for r in results]},
            cache_control=WRITE_CACHE_CONTROL,
            etag=False,  # the outcome of a command, not a representation to revalidate
        )


# API v1: the same resources on the default workspace, marked deprecated.
for _resource, _path in ((TaskCollection, ""), (TaskItem, "/<uuid:task_id>"), (TaskBulk, "/bulk")):
    ns_v1.add_resource(deprecated_copy(_resource, "1", without_params={"workspace_id"}), _path)
