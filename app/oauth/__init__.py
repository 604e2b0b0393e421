"""OAuth 2: client registration (``/api/v2/workspaces/{id}/oauth-clients``) and the
authorization server (``/oauth/*``, app/oauth/server.py) whose tokens work on the API."""

from __future__ import annotations

from app.db import db
from app.oauth.service import OAuthClientService
from app.workspaces import workspace_service


def oauth_client_service() -> OAuthClientService:
    return OAuthClientService(db.session(), workspace_service())
