"""Workspaces: the tenants. ``workspace_service()`` is this request's service on the directory."""

from __future__ import annotations

from app.db import db
from app.db.shards import shard_session, shards
from app.workspaces.service import WorkspaceService


def workspace_service() -> WorkspaceService:
    return WorkspaceService(db.session(), shards(), shard_session)
