"""``/api/v2/workspaces/{id}/oauth-clients``: registering the apps that may act in a workspace
(thin resources over app/oauth/service.py; the protocol endpoints are in app/oauth/server.py)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request
from flask_restx import Model, Namespace, fields

from app.api.models import QUERY_ERROR, json_body_errors, problem, requires
from app.api.resource import ApiResource
from app.auth.permissions import Action
from app.core.http_cache import dump_json, json_response, no_content
from app.core.security_headers import no_store
from app.core.validation import json_body
from app.oauth import oauth_client_service
from app.oauth.service import AUTH_METHODS, GRANT_TYPES, OAuthClient, RegisteredClient
from app.tasks.schemas import NullableString, iso_utc
from app.workspaces.schemas import EXAMPLE_WORKSPACE_ID

ns = Namespace("oauth-clients", description="OAuth clients: apps that act in one workspace")

client_input = Model(
    "OAuthClientInput",
    {
        "name": fields.String(required=True, min_length=1, max_length=100, example="Task board"),
        "redirect_uris": fields.List(
            fields.String,
            description="Exact URIs the authorization code may be sent to: https, or http on "
            "127.0.0.1/localhost. Needed for authorization_code.",
            example=["https://board.example/oauth/callback"],
        ),
        "grant_types": fields.List(
            fields.String(enum=list(GRANT_TYPES)),
            description="Default: authorization_code and refresh_token",
            example=["authorization_code", "refresh_token"],
        ),
        "scopes": fields.List(
            fields.String(enum=["read", "write"]),
            description='The most its tokens may get: ["read"] (default) or ["read", "write"]',
            example=["read", "write"],
        ),
        "token_endpoint_auth_method": fields.String(
            enum=list(AUTH_METHODS),
            description="none: a public client (no secret; native and browser apps)",
            example="client_secret_basic",
        ),
    },
    strict=True,
)
oauth_client = Model(
    "OAuthClient",
    {
        "client_id": fields.String(example="3f6c1b2a-8d1e-4c3b-9a55-0d2c6b7e9f10"),
        "name": fields.String(example="Task board"),
        "redirect_uris": fields.List(fields.String, example=["https://board.example/cb"]),
        "grant_types": fields.List(fields.String, example=["authorization_code"]),
        "scopes": fields.List(fields.String, example=["read", "write"]),
        "token_endpoint_auth_method": fields.String(example="client_secret_basic"),
        "created_by": NullableString(description="The user who registered it"),
        "created_at": fields.String(example="2026-11-26T10:00:00.000Z"),
        "revoked_at": NullableString(description="null: not revoked"),
    },
)
registered_client = Model(
    "RegisteredOAuthClient",
    {
        **oauth_client,
        "client_secret": NullableString(
            description="Shown this once (null for a public client): store it now"
        ),
    },
)
client_list = Model("OAuthClientList", {"items": fields.List(fields.Nested(oauth_client))})
for _model in (client_input, oauth_client, registered_client, client_list):
    ns.add_model(_model.name, _model)

_WORKSPACE: dict[str, Any] = {"description": "The workspace id", "format": "uuid"}
_WORKSPACE["x-example"] = EXAMPLE_WORKSPACE_ID
_MANAGERS = "Only the workspace's owners and admins, signed in (not with a key), manage clients"
_NO_WORKSPACE = "No such workspace, or you are not a member of it"


def client_to_dict(item: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": str(item.client_id),
        "name": item.name,
        "redirect_uris": list(item.redirect_uris),
        "grant_types": list(item.grant_types),
        "scopes": list(item.scopes),
        "token_endpoint_auth_method": item.token_endpoint_auth_method,
        "created_by": str(item.created_by) if item.created_by else None,
        "created_at": iso_utc(item.created_at),
        "revoked_at": iso_utc(item.revoked_at) if item.revoked_at else None,
    }


def registered_to_dict(registered: RegisteredClient) -> dict[str, Any]:
    return {**client_to_dict(registered.client), "client_secret": registered.secret}


@ns.route("")
@ns.param("workspace_id", **_WORKSPACE)
class OAuthClientCollection(ApiResource):
    @requires(ns, Action.OAUTH_CLIENTS_MANAGE)
    @ns.doc("list_oauth_clients", description="The workspace's clients (never their secrets).")
    @ns.response(200, "The clients, newest first", client_list)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(403, _MANAGERS, problem)
    @ns.response(404, _NO_WORKSPACE, problem)
    def get(self, workspace_id: uuid.UUID) -> Response:
        items = oauth_client_service().list(workspace_id)
        return json_response({"items": [client_to_dict(item) for item in items]}, etag=False)

    @no_store
    @requires(ns, Action.OAUTH_CLIENTS_MANAGE)
    @ns.doc(
        "register_oauth_client",
        description="Register an app. A confidential client's secret is in the response, the "
        "only time it is shown. Its users authorize it at /oauth/authorize (PKCE S256).",
    )
    @ns.expect(client_input)
    @ns.response(201, "Registered: store `client_secret` now", registered_client)
    @json_body_errors(ns)
    @ns.response(403, _MANAGERS, problem)
    @ns.response(404, _NO_WORKSPACE, problem)
    @ns.response(409, "The workspace has too many active clients", problem)
    @ns.response(422, "A field is invalid or unknown; errors lists each", problem)
    def post(self, workspace_id: uuid.UUID) -> Response:
        registered = oauth_client_service().register(workspace_id, json_body())
        return json_response(
            encoded=dump_json(registered_to_dict(registered)),
            status=201,
            headers={"Location": f"{request.path}/{registered.client.client_id}"},
            cache_control="no-store",
            etag=False,
        )


@ns.route("/<uuid:client_id>")
@ns.param("workspace_id", **_WORKSPACE)
@ns.param("client_id", "The client's id", format="uuid")
class OAuthClientItem(ApiResource):
    @requires(ns, Action.OAUTH_CLIENTS_MANAGE)
    @ns.doc("get_oauth_client", description="One client (never its secret).")
    @ns.response(200, "The client", oauth_client)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(403, _MANAGERS, problem)
    @ns.response(404, "No such workspace or client (or not yours)", problem)
    def get(self, workspace_id: uuid.UUID, client_id: uuid.UUID) -> Response:
        item = oauth_client_service().get(workspace_id, client_id)
        return json_response(client_to_dict(item), etag=False)

    @requires(ns, Action.OAUTH_CLIENTS_MANAGE)
    @ns.doc(
        "revoke_oauth_client",
        description="Revoke the client: it, its codes and every token it obtained stop working.",
    )
    @ns.response(204, "Revoked")
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(403, _MANAGERS, problem)
    @ns.response(404, "No such workspace or client (or not yours)", problem)
    def delete(self, workspace_id: uuid.UUID, client_id: uuid.UUID) -> Response:
        oauth_client_service().revoke(workspace_id, client_id)
        return no_content()
