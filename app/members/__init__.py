"""Workspace members: who has which role in a workspace (add, change role, remove)."""

from __future__ import annotations

from app.db import db
from app.members.service import MembershipService
from app.workspaces import workspace_service


def membership_service() -> MembershipService:
    directory = workspace_service()
    return MembershipService(db.session(), directory)
