"""``/api/v2/workspaces/{id}/api-keys``: thin resources over the API key service."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request
from flask_restx import Namespace

from app.api.models import QUERY_ERROR, json_body_errors, problem, requires
from app.api.resource import ApiResource
from app.api_keys import api_key_service
from app.api_keys.schemas import (
    MODELS,
    api_key,
    created_key,
    created_to_dict,
    key_input,
    key_list,
    key_to_dict,
    rotate_input,
)
from app.auth.permissions import Action
from app.auth.schemas import checked
from app.core.http_cache import dump_json, json_response, no_content
from app.core.security_headers import no_store
from app.core.validation import json_body
from app.workspaces.schemas import EXAMPLE_WORKSPACE_ID

ns = Namespace("api-keys", description="API keys: credentials for scripts, one workspace each")
for _model in MODELS:
    ns.add_model(_model.name, _model)

_WORKSPACE: dict[str, Any] = {"description": "The workspace id", "format": "uuid"}
_WORKSPACE["x-example"] = EXAMPLE_WORKSPACE_ID
_MANAGERS = "Only the workspace's owners and admins, signed in (not with a key), manage keys"
_NO_WORKSPACE = "No such workspace, or you are not a member of it"


def _secret_response(body: dict[str, Any], status: int, **headers: str) -> Response:
    return json_response(
        encoded=dump_json(body), status=status, headers=headers, cache_control="no-store",
        etag=False,
    )  # fmt: skip


@ns.route("")
@ns.param("workspace_id", **_WORKSPACE)
class ApiKeyCollection(ApiResource):
    @requires(ns, Action.API_KEYS_MANAGE)
    @ns.doc("list_api_keys", description="The workspace's keys (never their secrets).")
    @ns.response(200, "The keys, newest first", key_list)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(403, _MANAGERS, problem)
    @ns.response(404, _NO_WORKSPACE, problem)
    def get(self, workspace_id: uuid.UUID) -> Response:
        keys = api_key_service().list(workspace_id)
        return json_response({"items": [key_to_dict(item) for item in keys]}, etag=False)

    @no_store
    @requires(ns, Action.API_KEYS_MANAGE)
    @ns.doc(
        "create_api_key",
        description="A new key. The response holds the key itself, the only time it is shown: "
        "send it as `Authorization: Bearer tm_...`.",
    )
    @ns.expect(key_input)
    @ns.response(201, "Created: store `key` now", created_key)
    @json_body_errors(ns)
    @ns.response(403, _MANAGERS, problem)
    @ns.response(404, _NO_WORKSPACE, problem)
    @ns.response(409, "The workspace has too many active keys", problem)
    @ns.response(422, "A field is invalid or unknown; errors lists each", problem)
    def post(self, workspace_id: uuid.UUID) -> Response:
        created = api_key_service().create(workspace_id, json_body())
        location = f"{request.path}/{created.key.id}"
        return _secret_response(created_to_dict(created), 201, Location=location)


@ns.route("/<uuid:key_id>")
@ns.param("workspace_id", **_WORKSPACE)
@ns.param("key_id", "The key's id", format="uuid")
class ApiKeyItem(ApiResource):
    @requires(ns, Action.API_KEYS_MANAGE)
    @ns.doc("get_api_key", description="One key (never its secret).")
    @ns.response(200, "The key", api_key)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(403, _MANAGERS, problem)
    @ns.response(404, "No such workspace or key (or not yours)", problem)
    def get(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> Response:
        return json_response(key_to_dict(api_key_service().get(workspace_id, key_id)), etag=False)

    @requires(ns, Action.API_KEYS_MANAGE)
    @ns.doc("revoke_api_key", description="Revoke the key: it stops working at once.")
    @ns.response(204, "Revoked")
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(403, _MANAGERS, problem)
    @ns.response(404, "No such workspace or key (or not yours)", problem)
    def delete(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> Response:
        api_key_service().revoke(workspace_id, key_id)
        return no_content()


@ns.route("/<uuid:key_id>/rotate")
@ns.param("workspace_id", **_WORKSPACE)
@ns.param("key_id", "The key's id", format="uuid")
class ApiKeyRotation(ApiResource):
    @no_store
    @requires(ns, Action.API_KEYS_MANAGE)
    @ns.doc(
        "rotate_api_key",
        description="A new key with the same name, scopes and expiry; the old one keeps "
        "working `overlap_seconds` (default 0: revoked now) while you switch.",
    )
    @ns.expect(rotate_input)
    @ns.response(201, "The new key: store `key` now", created_key)
    @json_body_errors(ns)
    @ns.response(403, _MANAGERS, problem)
    @ns.response(404, "No such live key in this workspace (or not yours)", problem)
    @ns.response(422, "overlap_seconds is invalid", problem)
    def post(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> Response:
        # No body at all means the defaults ({}); a body must be JSON.
        document = checked(rotate_input, json_body() if request.content_length else {})
        created = api_key_service().rotate(
            workspace_id, key_id, int(document.get("overlap_seconds") or 0)
        )
        location = f"{request.path.rsplit('/', 2)[0]}/{created.key.id}"
        return _secret_response(created_to_dict(created), 201, Location=location)
