"""Workspaces: the tenants. ``workspace_service()`` is this request's service on the directory,
acting for this request's caller (outside a request: the system itself, e.g. the CLI)."""

from __future__ import annotations

from flask import has_request_context, request

from app.auth.errors import AuthenticationRequired
from app.auth.principal import SYSTEM, current_principal
from app.db import db
from app.db.shards import shard_session, shards
from app.workspaces.service import WorkspaceService


def workspace_service() -> WorkspaceService:
    principal = current_principal()
    if principal is None:
        if has_request_context():  # a route that forgot to authenticate must not run as system
            raise AuthenticationRequired()
        principal = SYSTEM
    client_ip = request.remote_addr if has_request_context() else None
    return WorkspaceService(
        db.session(), shards(), shard_session, principal=principal, client_ip=client_ip
    )
