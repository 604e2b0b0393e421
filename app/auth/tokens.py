"""Access and refresh tokens: JWTs made and checked by flask-jwt-extended, signed with the key
ring's newest Ed25519 key (EdDSA), which each token names in its ``kid`` header.

Claims: ``sub`` (the user id), ``sid`` (the session: one login and its refresh tokens), ``type``
(``access`` or ``refresh``), ``jti``, ``iat``/``nbf``/``exp``, ``iss``/``aud``. Access tokens are
checked by signature and expiry, plus one look-up: is their session revoked (log out, a reused
refresh token)? That list lives in the control database, or in Redis with ``REDIS_URL``.

We call flask-jwt-extended's ``create_*_token``/``decode_token`` ourselves instead of its
``@jwt_required``: one authentication path serves JWTs, API keys and OAuth tokens, and every
failure becomes our own 401 problem, whatever the configuration (flask-restx would turn the
library's exceptions into 500s with ``PROPAGATE_EXCEPTIONS`` off, as in production).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt as pyjwt
from flask import Flask, current_app, g
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from sqlalchemy import bindparam, select

from app.auth.errors import InvalidToken
from app.auth.keys import init_key_ring, key_ring
from app.auth.models import AuthSessionRow
from app.db import db
from app.db.shards import outside_transaction

logger = logging.getLogger(__name__)

ACCESS = "access"
REFRESH = "refresh"
MFA_PENDING = "mfa"  # a password was right; the second factor is still to come
MAX_TOKEN_LENGTH = 4096  # ours are ~400 bytes; refuse to parse anything far bigger
MFA_TOKEN_TTL = 300


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


def init_tokens(app: Flask) -> None:
    """flask-jwt-extended on this app, with our keys and claims; the revocation list."""
    ttl = timedelta(seconds=int(app.config["ACCESS_TOKEN_TTL"]))
    app.config.update(
        JWT_ALGORITHM="EdDSA",
        JWT_DECODE_ALGORITHMS=["EdDSA"],  # never "none", never an HMAC with the public key
        JWT_ACCESS_TOKEN_EXPIRES=ttl,
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(seconds=int(app.config["REFRESH_TOKEN_TTL"])),
        JWT_ENCODE_ISSUER=app.config["TOKEN_ISSUER"],
        JWT_DECODE_ISSUER=app.config["TOKEN_ISSUER"],
        JWT_ENCODE_AUDIENCE=app.config["TOKEN_ISSUER"],
        JWT_DECODE_AUDIENCE=app.config["TOKEN_ISSUER"],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_DECODE_LEEWAY=5,  # seconds of clock skew between our own servers
    )
    init_key_ring(app)
    manager = JWTManager()
    manager.init_app(app)

    # flask-jwt-extended asks for the header first, then the key: take the key once, so a
    # rotation picked up in between cannot sign with one key and name another.
    @manager.additional_headers_loader
    def _kid_header(_identity: Any) -> dict[str, str]:
        g.jwt_signing_key = key_ring(current_app).signing_key()
        return {"kid": g.jwt_signing_key.kid}

    @manager.encode_key_loader
    def _signing_key(_identity: Any) -> Any:
        return g.pop("jwt_signing_key").private_key

    @manager.decode_key_loader
    def _verification_key(header: dict[str, Any], _claims: dict[str, Any]) -> Any:
        key = key_ring(current_app).verification_key(header.get("kid"))
        if key is None:
            raise InvalidToken("The token is signed with a key this service does not know.")
        return key

    app.extensions["revocations"] = make_revocation_list(app)


def issue_access_token(
    user_id: uuid.UUID, session_id: str, *, extra: dict[str, Any] | None = None
) -> IssuedToken:
    jti = str(uuid.uuid4())
    ttl = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    token = create_access_token(
        identity=str(user_id), additional_claims={"sid": session_id, "jti": jti, **(extra or {})}
    )
    return IssuedToken(token, jti, _now() + ttl)


def issue_refresh_token(user_id: uuid.UUID, session_id: str, *, now: datetime) -> IssuedToken:
    jti = str(uuid.uuid4())
    ttl = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    token = create_refresh_token(
        identity=str(user_id), additional_claims={"sid": session_id, "jti": jti}
    )
    return IssuedToken(token, jti, now + ttl)


def issue_mfa_token(user_id: uuid.UUID) -> str:
    """Proof that the password was right, good for MFA_TOKEN_TTL seconds and for nothing but
    the second step of the login."""
    return create_access_token(
        identity=str(user_id),
        additional_claims={"type": MFA_PENDING},
        expires_delta=timedelta(seconds=MFA_TOKEN_TTL),
    )


def decode(token: str, expected_type: str) -> dict[str, Any]:
    """The verified claims of one of our tokens of ``expected_type``; InvalidToken otherwise."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise InvalidToken("The token is malformed.")
    try:
        claims = decode_token(token)
    except pyjwt.ExpiredSignatureError:
        raise InvalidToken("The token has expired.") from None
    except (pyjwt.PyJWTError, JWTExtendedException, ValueError):
        raise InvalidToken("The token is malformed or its signature is not valid.") from None
    if claims.get("type") != expected_type:
        raise InvalidToken(f"This is not an {expected_type} token.")
    subject, session = claims.get("sub"), claims.get("sid")
    if expected_type != MFA_PENDING and not isinstance(session, str):
        raise InvalidToken("The token is malformed.")
    try:
        claims["user_id"] = uuid.UUID(subject)
    except (TypeError, ValueError, AttributeError):
        raise InvalidToken("The token is malformed.") from None
    return claims


def _now() -> datetime:
    from app.tasks.models import utc_now

    return utc_now()


# --- The revocation list: revoked sessions ------------------------------------------------------

_SESSION_REVOKED = select(AuthSessionRow.revoked_at).where(
    AuthSessionRow.id == bindparam("session_id")
)


class DatabaseRevocations:
    """Revoked sessions straight from ``auth_sessions`` (the record): one indexed read."""

    def is_revoked(self, session_id: str) -> bool:
        row = (
            outside_transaction(db.session())
            .execute(_SESSION_REVOKED, {"session_id": session_id})
            .one_or_none()
        )
        return row is None or row.revoked_at is not None  # unknown session: not ours any more

    def revoked(self, session_ids: list[str]) -> None:
        """Called after the database committed the revocation: nothing more to do here."""


class RedisRevocations:
    """Revoked session ids as Redis keys that expire with the last access token they could
    have signed (ACCESS_TOKEN_TTL): the check per request is one EXISTS. The database stays the
    record; if Redis cannot be reached, the check falls back to it."""

    def __init__(self, url: str, prefix: str, ttl: int) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._prefix = f"{prefix}revoked-session:"
        self._ttl = ttl
        self._fallback = DatabaseRevocations()
        self._warned = False

    def is_revoked(self, session_id: str) -> bool:
        import redis

        try:
            return bool(self._redis.exists(self._prefix + session_id))
        except redis.RedisError as exc:
            self._warn(exc)
            return self._fallback.is_revoked(session_id)

    def revoked(self, session_ids: list[str]) -> None:
        import redis

        if not session_ids:
            return
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for session_id in session_ids:
                    pipe.set(self._prefix + session_id, 1, ex=self._ttl + 60)
                pipe.execute()
        except redis.RedisError as exc:
            # The sessions are revoked in the database (their refresh tokens are dead); their
            # access tokens pass the Redis check until they expire (ACCESS_TOKEN_TTL at most).
            logger.error(
                "could not record %d revoked session(s) in Redis: %s", len(session_ids), exc
            )

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("Redis unreachable, checking revocations in the database: %s", exc)


def make_revocation_list(app: Flask) -> DatabaseRevocations | RedisRevocations:
    if app.config.get("REDIS_URL"):
        return RedisRevocations(
            app.config["REDIS_URL"],
            app.config["REDIS_KEY_PREFIX"],
            int(app.config["ACCESS_TOKEN_TTL"]),
        )
    return DatabaseRevocations()


def revocations() -> DatabaseRevocations | RedisRevocations:
    return current_app.extensions["revocations"]
