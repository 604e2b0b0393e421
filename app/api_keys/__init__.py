"""API keys: long-lived credentials for scripts and integrations, bound to one workspace."""

from __future__ import annotations

from app.api_keys.service import ApiKeyService
from app.db import db
from app.workspaces import workspace_service


def api_key_service() -> ApiKeyService:
    return ApiKeyService(db.session(), workspace_service())
