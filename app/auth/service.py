"""Account use cases, free of HTTP: register, log in (with a second factor), refresh, log out,
change password. Tokens: app/auth/tokens.py; passwords and emails: app/auth/credentials.py.

Refresh tokens rotate: each is single use, and a refresh hands out a new pair. Presenting a used
one again means two parties hold it (RFC 9700 4.14): the whole session is revoked, unless it
comes back within REFRESH_REUSE_GRACE seconds and its successor is still unused, which is a
client retrying a request whose answer it lost; that retry gets a new pair, and the successor it
never saw is retired, so the session keeps a single live refresh token.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import has_app_context
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.audit.service import record_event
from app.auth import credentials
from app.auth.errors import InvalidCredentials, InvalidToken
from app.auth.login_throttle import LoginThrottle
from app.auth.models import AuthSessionRow, RefreshTokenRow, UserRow
from app.auth.principal import Principal, current_principal
from app.auth.tokens import (
    REFRESH,
    IssuedToken,
    decode,
    issue_access_token,
    issue_mfa_token,
    issue_refresh_token,
    revocations,
)
from app.core.errors import ApiProblem, ProblemType, ValidationProblem
from app.tasks.models import new_task_id, utc_now

logger = logging.getLogger(__name__)


class EmailTaken(ApiProblem):
    problem_type = ProblemType(
        slug="email-taken",
        title="Email already registered",
        status=409,
        description="An account with this email exists. Log in, or register with another email.",
    )

    def __init__(self) -> None:
        super().__init__("An account with this email exists.")


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    is_platform_admin: bool
    mfa_enabled: bool
    created_at: datetime


@dataclass(frozen=True)
class TokenPair:
    access: IssuedToken
    refresh: IssuedToken
    session_id: str


@dataclass(frozen=True)
class LoginResult:
    """Tokens, or (second factor on) a short-lived ticket for POST /auth/login/mfa."""

    tokens: TokenPair | None = None
    mfa_token: str | None = None


def to_user(row: UserRow) -> User:
    return User(
        id=row.id,
        email=row.email,
        is_platform_admin=row.is_platform_admin,
        mfa_enabled=row.totp_enabled_at is not None,
        created_at=row.created_at,
    )


class AccountService:
    def __init__(
        self,
        session: Session,
        config: Mapping[str, Any],
        *,
        clock: Callable[[], datetime] = utc_now,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.session = session
        self.config = config
        self._clock = clock
        # Backoff after failed log-ins (app/auth/login_throttle.py); None: no backoff.
        self._throttle = throttle
        self.hasher = credentials.hasher_from_config(config)

    # --- accounts ------------------------------------------------------------------------------

    def register(self, email: str, password: str, *, platform_admin: bool = False) -> User:
        email = self._valid_email(email)
        self._check_password(password, email)
        password_hash = credentials.hash_password(self.hasher, password)  # outside the lock
        now = self._clock()
        with self.write_transaction():
            if self.session.scalar(select(UserRow.id).where(UserRow.email == email)) is not None:
                raise EmailTaken()
            row = UserRow(
                id=new_task_id(),
                email=email,
                password_hash=password_hash,
                is_platform_admin=platform_admin,
                created_at=now,
                updated_at=now,
            )
            self.session.add(row)
            self.session.flush()
            self.audit(
                "user.registered",
                row.id,
                {"platform_admin": platform_admin},
                actor=None if current_principal() else f"user:{row.id}",
            )
        return to_user(row)

    def user(self, user_id: uuid.UUID) -> User:
        row = self.session.get(UserRow, user_id)
        if row is None:
            raise InvalidToken("The account no longer exists.")
        return to_user(row)

    def change_password(self, principal: Principal, current: str, new: str) -> None:
        """Needs the current password; every other session of the user ends."""
        row = self.user_row(principal)
        if not credentials.verify_password(self.hasher, row.password_hash, current):
            self.audit_in_own_transaction("user.password_change_failed", row.id, {})
            raise InvalidCredentials("The current password is wrong.")
        self._check_password(new, row.email, pointer="#/new_password")
        new_hash = credentials.hash_password(self.hasher, new)
        with self.write_transaction():
            row = self.user_row(principal, lock=True)
            row.password_hash = new_hash
            row.updated_at = self._clock()
            ended = self._revoke_sessions(row.id, "password_changed", keep=principal.session_id)
            self.audit("user.password_changed", row.id, {"sessions_ended": len(ended)})
        revocations().revoked(ended)

    # --- logging in and out ----------------------------------------------------------------------

    def login(self, email: str, password: str, *, client_ip: str = "") -> LoginResult:
        """Same answer, and about the same time, for an unknown email and a wrong password."""
        try:
            normalised = credentials.normalise_email(email)
        except ValueError:
            normalised = None
        account = normalised or email.strip().lower()[:320]
        if self._throttle is not None:
            self._throttle.check(account, client_ip)  # 429 while backing off: before any hash
        try:
            result = self._login(normalised, password)
        except InvalidCredentials:
            if self._throttle is not None:  # unknown emails too: else it tells which exist
                self._throttle.record_failure(account, client_ip)
            raise
        if self._throttle is not None:
            self._throttle.record_success(account, client_ip)
        return result

    def _login(self, normalised: str | None, password: str) -> LoginResult:
        row = None
        if normalised is not None:
            row = self.session.scalars(select(UserRow).where(UserRow.email == normalised)).first()
        if row is None:
            credentials.burn_verify_time(self.hasher, password)
            self.audit_in_own_transaction(
                "user.login_failed", "unknown", {"reason": "unknown_account"}
            )
            raise InvalidCredentials()
        if not credentials.verify_password(self.hasher, row.password_hash, password):
            self.audit_in_own_transaction("user.login_failed", row.id, {"reason": "wrong_password"})
            raise InvalidCredentials()
        if credentials.needs_rehash(self.hasher, row.password_hash):
            # The cost settings changed since this hash was made: redo it now that we have the
            # password (the only moment we do).
            new_hash = credentials.hash_password(self.hasher, password)
            with self.write_transaction():
                self.session.execute(
                    update(UserRow).where(UserRow.id == row.id).values(password_hash=new_hash)
                )
        if row.totp_enabled_at is not None:
            return LoginResult(mfa_token=issue_mfa_token(row.id))
        return LoginResult(tokens=self.start_session(row.id, "user.logged_in"))

    def start_session(self, user_id: uuid.UUID, action: str, **details: Any) -> TokenPair:
        now = self._clock()
        session_id = str(uuid.uuid4())
        refresh = issue_refresh_token(user_id, session_id, now=now)
        with self.write_transaction():
            self.session.add(
                AuthSessionRow(
                    id=session_id, user_id=user_id, created_at=now, expires_at=refresh.expires_at
                )
            )
            self.session.flush()
            self.session.add(
                RefreshTokenRow(
                    jti=refresh.jti,
                    session_id=session_id,
                    issued_at=now,
                    expires_at=refresh.expires_at,
                )
            )
            self.audit(action, user_id, {"session": session_id, **details}, actor=f"user:{user_id}")
        return TokenPair(issue_access_token(user_id, session_id), refresh, session_id)

    def refresh(self, token: str) -> TokenPair:
        claims = decode(token, REFRESH)
        now = self._clock()
        grace = timedelta(seconds=int(self.config["REFRESH_REUSE_GRACE"]))
        reused = False
        with self.write_transaction():
            row = self.session.scalars(
                select(RefreshTokenRow)
                .where(RefreshTokenRow.jti == claims.get("jti"))
                .with_for_update()
            ).one_or_none()
            auth_session = self.session.get(AuthSessionRow, claims["sid"], with_for_update=True)
            if row is None or auth_session is None or row.session_id != auth_session.id:
                raise InvalidToken("The refresh token is not known.")
            if auth_session.revoked_at is not None:
                raise InvalidToken("The session has ended; log in again.")
            if row.used_at is not None:
                successor = (
                    self.session.get(RefreshTokenRow, row.successor_jti, with_for_update=True)
                    if row.successor_jti
                    else None
                )
                retry = (
                    now - row.used_at <= grace
                    and successor is not None
                    and successor.used_at is None
                )
                if not retry:
                    reused = True
                    auth_session.revoked_at = now
                    auth_session.revoked_reason = "refresh_token_reused"
                    self.audit(  # the session's user: whoever holds the token acts as them
                        "user.refresh_token_reused",
                        auth_session.user_id,
                        {"session": auth_session.id, "jti": row.jti},
                        actor=f"user:{auth_session.user_id}",
                    )
                else:  # retire the successor the client never received
                    successor.used_at = now
            if not reused:
                new_refresh = issue_refresh_token(auth_session.user_id, auth_session.id, now=now)
                row.used_at = row.used_at or now
                row.successor_jti = new_refresh.jti
                self.session.add(
                    RefreshTokenRow(
                        jti=new_refresh.jti,
                        session_id=auth_session.id,
                        issued_at=now,
                        expires_at=new_refresh.expires_at,
                    )
                )
                auth_session.expires_at = new_refresh.expires_at
        if reused:
            revocations().revoked([auth_session.id])
            raise InvalidToken("The refresh token was already used; the session has ended.")
        access = issue_access_token(auth_session.user_id, auth_session.id)
        return TokenPair(access, new_refresh, auth_session.id)

    def logout(self, principal: Principal) -> None:
        """End the caller's session: its refresh token and every access token of it."""
        if principal.session_id is None or principal.user_id is None:
            return
        with self.write_transaction():
            ended = self._revoke_sessions(principal.user_id, "logout", only=principal.session_id)
            self.audit("user.logged_out", principal.user_id, {"session": principal.session_id})
        revocations().revoked(ended)

    def logout_everywhere(self, principal: Principal) -> int:
        assert principal.user_id is not None
        with self.write_transaction():
            ended = self._revoke_sessions(principal.user_id, "logout_everywhere")
            self.audit("user.logged_out_everywhere", principal.user_id, {"sessions": len(ended)})
        revocations().revoked(ended)
        return len(ended)

    # --- helpers ---------------------------------------------------------------------------------

    def _revoke_sessions(
        self, user_id: uuid.UUID, reason: str, *, only: str | None = None, keep: str | None = None
    ) -> list[str]:
        now = self._clock()
        query = select(AuthSessionRow.id).where(
            AuthSessionRow.user_id == user_id,
            AuthSessionRow.revoked_at.is_(None),
            AuthSessionRow.expires_at > now,
        )
        if only is not None:
            query = query.where(AuthSessionRow.id == only)
        if keep is not None:
            query = query.where(AuthSessionRow.id != keep)
        ended = list(self.session.scalars(query))
        if ended:
            self.session.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.id.in_(ended))
                .values(revoked_at=now, revoked_reason=reason)
            )
        return ended

    def user_row(self, principal: Principal, *, lock: bool = False) -> UserRow:
        if principal.user_id is None:
            raise InvalidToken("This needs a user's access token.")
        row = self.session.get(UserRow, principal.user_id, with_for_update=lock)
        if row is None:
            raise InvalidToken("The account no longer exists.")
        return row

    def _valid_email(self, email: Any, pointer: str = "#/email") -> str:
        if not isinstance(email, str):
            raise ValidationProblem([{"pointer": pointer, "detail": "must be a string"}])
        try:
            return credentials.normalise_email(email)
        except ValueError as exc:
            raise ValidationProblem([{"pointer": pointer, "detail": str(exc)}]) from None

    def _check_password(self, password: Any, email: str, pointer: str = "#/password") -> None:
        if not isinstance(password, str):
            raise ValidationProblem([{"pointer": pointer, "detail": "must be a string"}])
        problems = credentials.password_problems(
            password,
            min_length=int(self.config["PASSWORD_MIN_LENGTH"]),
            max_length=int(self.config["PASSWORD_MAX_LENGTH"]),
            context=[email, email.partition("@")[0]],
        )
        if problems:
            raise ValidationProblem([{"pointer": pointer, "detail": p} for p in problems])

    def write_transaction(self) -> Any:
        """A write transaction on the control database (BEGIN IMMEDIATE on SQLite)."""
        if self.session.in_transaction():
            self.session.rollback()
        transaction = self.session.begin()
        self.session.connection(execution_options={"write_transaction": True})
        return transaction

    def audit(
        self,
        action: str,
        user_id: uuid.UUID | str,
        details: dict[str, Any],
        *,
        actor: str | None = None,
    ) -> None:
        """An account event in the platform chain; ``actor`` when the request has no
        authenticated caller yet but we know who acts (signing up, logging in)."""
        record_event(
            self.session,
            actor=actor,
            action=action,
            entity_type="user",
            entity_id=user_id,
            workspace_id=None,
            changes={key: {"before": None, "after": value} for key, value in details.items()},
        )

    def audit_in_own_transaction(
        self, action: str, user_id: uuid.UUID | str, details: dict[str, Any]
    ) -> None:
        with self.write_transaction():
            self.audit(action, user_id, details)


def end_every_session(control: Engine, reason: str) -> int:
    """Revoke every live session (after a restore: the restored tables may hold sessions that
    were ended since the backup, and nothing says which). Everyone logs in again."""
    now = utc_now()
    with control.connect() as connection:
        connection.execution_options(write_transaction=True)  # SQLite: BEGIN IMMEDIATE
        with connection.begin():
            ended = list(
                connection.scalars(
                    select(AuthSessionRow.id).where(AuthSessionRow.revoked_at.is_(None))
                )
            )
            connection.execute(
                update(AuthSessionRow)
                .where(AuthSessionRow.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            )
    if has_app_context():
        revocations().revoked(ended)
    return len(ended)
