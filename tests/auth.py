"""Users and tokens for tests: real accounts and real signed tokens, made without the HTTP API
(quick: no password hashing at full cost, no audit events to count around)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.auth.models import AuthSessionRow, MembershipRow, UserRow
from app.auth.tokens import issue_access_token
from app.db import db
from app.tasks.models import new_task_id, utc_now
from app.workspaces.models import DEFAULT_WORKSPACE_ID

# An Argon2id hash nobody knows the password of: these users sign in with issued tokens only.
UNUSABLE_PASSWORD_HASH = "$argon2id$v=19$m=8,t=1,p=1$bm90LWEtcmVhbC1zYWx0$AAAAAAAAAAAAAAAAAAAAAA"


@dataclass(frozen=True)
class TestUser:
    __test__ = False  # not a test class, whatever pytest thinks of the name
    id: uuid.UUID
    email: str
    token: str
    session_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def add_user(
    app: Flask,
    email: str,
    *,
    role: str | None = None,
    workspace_id: uuid.UUID = DEFAULT_WORKSPACE_ID,
    platform_admin: bool = False,
) -> TestUser:
    """A user (member of ``workspace_id`` with ``role``, if given) and an access token."""
    now = utc_now()
    user_id, session_id = new_task_id(), str(uuid.uuid4())
    with app.app_context():
        session = db.session()
        with session.begin():
            session.add(
                UserRow(
                    id=user_id,
                    email=email,
                    password_hash=UNUSABLE_PASSWORD_HASH,
                    is_platform_admin=platform_admin,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.flush()  # no ORM relationships: the user row first, for the foreign keys
            session.add(
                AuthSessionRow(
                    id=session_id,
                    user_id=user_id,
                    created_at=now,
                    expires_at=now + timedelta(days=1),
                )
            )
            if role is not None:
                session.add(
                    MembershipRow(
                        workspace_id=workspace_id,
                        user_id=user_id,
                        role=role,
                        created_at=now,
                        updated_at=now,
                    )
                )
        token = issue_access_token(user_id, session_id).token
    return TestUser(user_id, email, token, session_id)


def add_member(app: Flask, workspace_id: uuid.UUID | str, role: str, email: str) -> TestUser:
    return add_user(app, email, role=role, workspace_id=uuid.UUID(str(workspace_id)))


class BearerClient(FlaskClient):
    """A test client that sends a bearer token on every request: the app's test owner's, or
    ``token=`` (an empty string: none). A request's own Authorization header wins."""

    def __init__(self, *args: Any, token: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if token is None:
            owner = self.application.extensions.get("test_owner")
            token = owner.token if owner is not None else ""
        if token:
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"


def renew_session(client: FlaskClient) -> None:
    """Give ``client`` a new session of the same user: a restore ends every session."""
    import jwt

    token = client.environ_base["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    user_id = uuid.UUID(jwt.decode(token, options={"verify_signature": False})["sub"])
    app = client.application
    now, session_id = utc_now(), str(uuid.uuid4())
    with app.app_context():
        session = db.session()
        with session.begin():
            session.add(
                AuthSessionRow(
                    id=session_id,
                    user_id=user_id,
                    created_at=now,
                    expires_at=now + timedelta(days=1),
                )
            )
        token = issue_access_token(user_id, session_id).token
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
