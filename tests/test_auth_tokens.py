"""Tokens through the HTTP API: what they carry, the JWKS that verifies them, every way a bad
one is refused (under the testing and the production configuration: flask-restx is known to turn
flask-jwt-extended's errors into 500s there), refresh rotation with reuse detection, revocation
across workers (Redis, and without it), and signing key rotation end to end."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask

from app.auth.keys import EXTENSION_NAME, RELOAD_INTERVAL_SECONDS, KeyRing, key_ring, rotate
from tests.test_auth import (
    BEARER_CHALLENGE,
    anonymous,
    assert_invalid_token,
    audit_rows,
    auth_app,
    bearer,
    login,
    me,
    refresh,
    register,
    worker_app,
    works,
)

ISSUER = "task-management-api"
PAIR_FIELDS = {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}


@pytest.fixture(params=["testing", "production"])
def env_app(request: pytest.FixtureRequest) -> Flask:
    """Runs a test under both configurations (cheap hashes and no rate limits in both)."""
    return auth_app(request.param)


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """``header.payload``, the signing input of a token made by hand."""
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


def signed(
    app: Flask,
    claims: dict[str, Any],
    *,
    key: Ed25519PrivateKey | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """``claims`` signed with the app's signing key (or ``key``), naming the signing key's kid
    (or ``headers``)."""
    signing = key_ring(app).signing_key()
    return jwt.encode(
        claims,
        key or signing.private_key,
        algorithm="EdDSA",
        headers={"kid": signing.kid} if headers is None else headers,
    )


def signed_by_hand(app: Flask, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Signed with the app's key, with a header PyJWT would refuse to write."""
    signing_input = unsigned(header, claims)
    signature = key_ring(app).signing_key().private_key.sign(signing_input.encode())
    return f"{signing_input}.{b64url(signature)}"


def hs256(claims: dict[str, Any], kid: str, secret: bytes) -> str:
    """The algorithm confusion attack: HMAC-SHA256 with the public key as the secret."""
    signing_input = unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


# --- What a token carries, and the JWKS --------------------------------------------------------


def test_tokens_name_their_key_and_verify_with_the_published_jwks(env_app: Flask) -> None:
    client = anonymous(env_app)
    user = register(client)
    tokens = login(client)
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "EdDSA"
    assert header["kid"] == key_ring(env_app).signing_key().kid

    response = client.get("/.well-known/jwks.json")  # public: no token
    assert response.status_code == 200
    published = {key["kid"]: key for key in response.get_json()["keys"]}
    jwk = published[header["kid"]]
    assert jwk["kty"] == "OKP"
    assert jwk["crv"] == "Ed25519"
    assert jwk["alg"] == "EdDSA"
    assert "d" not in jwk  # the public half only
    public_key = jwt.PyJWK(jwk).key

    access = jwt.decode(
        tokens["access_token"], public_key, algorithms=["EdDSA"], audience=ISSUER, issuer=ISSUER
    )
    assert access["sub"] == user["id"]
    assert access["type"] == "access"
    renewal = jwt.decode(
        tokens["refresh_token"], public_key, algorithms=["EdDSA"], audience=ISSUER, issuer=ISSUER
    )
    assert renewal["type"] == "refresh"
    assert renewal["sid"] == access["sid"]
    assert access["exp"] - access["iat"] == env_app.config["ACCESS_TOKEN_TTL"]
    assert renewal["exp"] - renewal["iat"] == env_app.config["REFRESH_TOKEN_TTL"]


def test_no_token_is_a_401_challenge_without_an_error(env_app: Flask) -> None:
    client = anonymous(env_app)
    for authorization in (None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNzd29yZA=="):
        headers = {} if authorization is None else {"Authorization": authorization}
        for path in ("/api/v2/auth/me", "/api/v2/workspaces"):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (authorization, path)
            assert response.mimetype == "application/problem+json"
            assert response.get_json()["type"] == "/problems/authentication-required"
            # RFC 6750 3.1: no error code when the request carried no (bearer) credentials.
            assert response.headers["WWW-Authenticate"] == BEARER_CHALLENGE


def _bad_tokens(app: Flask, tokens: dict[str, Any]) -> dict[str, str]:
    """Every kind of token that must be refused, by name. ``tokens``: a fresh login's."""
    access = tokens["access_token"]
    claims = claims_of(access)
    kid = jwt.get_unverified_header(access)["kid"]
    header, payload, signature = access.split(".")
    public_key = key_ring(app).signing_key().public_key
    now = int(time.time())
    other_user = {**claims, "sub": str(uuid.uuid4())}
    return {
        "not a JWT": "not-a-jwt",
        "garbage in three parts": "abc.def.ghi",
        "undecodable JSON": "eyJhbGciOiJFZERTQS.eyJzdWIiOiIx.c2ln",
        "empty parts": "..",
        "oversized": f"{header}.{payload}{'A' * 5000}.{signature}",
        "payload tampered with": f"{header}.{b64url(json.dumps(other_user).encode())}.{signature}",
        "signature of another token": f"{header}.{payload}.{tokens['refresh_token'].split('.')[2]}",
        "signed by a key not ours": signed(app, claims, key=Ed25519PrivateKey.generate()),
        "unknown kid": signed(app, claims, headers={"kid": "20200101T000000.000000Z-00000000"}),
        "kid not a string": signed_by_hand(app, {"alg": "EdDSA", "kid": 42}, claims),
        "kid a path": signed_by_hand(app, {"alg": "EdDSA", "kid": f"../{kid}"}, claims),
        "no kid": signed(app, claims, headers={}),
        "expired": signed(app, {**claims, "iat": now - 3600, "nbf": now - 3600, "exp": now - 60}),
        "not valid yet": signed(app, {**claims, "iat": now, "nbf": now + 600, "exp": now + 900}),
        "another audience": signed(app, {**claims, "aud": "someone-else"}),
        "another issuer": signed(app, {**claims, "iss": "https://evil.example"}),
        "no session": signed(app, {k: v for k, v in claims.items() if k != "sid"}),
        "subject not a user id": signed(app, {**claims, "sub": "admin"}),
        "a refresh token": tokens["refresh_token"],
        "an MFA ticket": signed(app, {**claims, "type": "mfa"}),
        "alg none": unsigned({"alg": "none", "typ": "JWT", "kid": kid}, claims) + ".",
        "alg none, no kid": unsigned({"alg": "none", "typ": "JWT"}, claims) + ".",
        "HS256 keyed with the PEM public key": hs256(
            claims,
            kid,
            public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ),
        "HS256 keyed with the raw public key": hs256(
            claims,
            kid,
            public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        ),
        "HS256 keyed with the JWK's x": hs256(
            claims, kid, key_ring(app).signing_key().jwk()["x"].encode()
        ),
    }


def test_every_bad_token_is_a_401_invalid_token(env_app: Flask) -> None:
    client = anonymous(env_app)
    register(client)
    tokens = login(client)
    # The forgeries below change one thing each: unchanged, the re-signed claims are accepted.
    claims = claims_of(tokens["access_token"])
    assert me(client, signed(env_app, claims)).status_code == 200
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    by_hand = signed_by_hand(env_app, {"alg": "EdDSA", "typ": "JWT", "kid": kid}, claims)
    assert me(client, by_hand).status_code == 200
    for name, token in _bad_tokens(env_app, tokens).items():
        for path in ("/api/v2/auth/me", "/api/v2/workspaces"):
            response = client.get(path, headers=bearer(token))
            assert response.status_code == 401, f"{name} on {path}: {response.status_code}"
            assert response.get_json()["type"] == "/problems/invalid-token", name
            challenge = response.headers["WWW-Authenticate"]
            assert challenge.startswith(f'{BEARER_CHALLENGE}, error="invalid_token"'), name
            assert token not in response.get_data(as_text=True) + challenge, name
    assert me(client, tokens["access_token"]).status_code == 200  # the real one still works


# --- Refresh ---------------------------------------------------------------------------------


def test_refresh_hands_out_a_new_pair_for_the_same_session(env_app: Flask) -> None:
    client = anonymous(env_app)
    register(client)
    first = login(client)
    response = refresh(client, first["refresh_token"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    second = response.get_json()
    assert set(second) == PAIR_FIELDS
    assert second["token_type"] == "Bearer"
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert claims_of(second["access_token"])["sid"] == claims_of(first["access_token"])["sid"]
    assert me(client, second["access_token"]).status_code == 200
    assert refresh(client, second["refresh_token"]).status_code == 200  # the chain goes on


def test_refresh_wants_a_refresh_token(env_app: Flask) -> None:
    client = anonymous(env_app)
    register(client)
    tokens = login(client)
    for token in (tokens["access_token"], "not-a-jwt", "a.b.c"):
        assert_invalid_token(refresh(client, token))
    assert client.post("/api/v2/auth/refresh", json={}).status_code == 422
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_reusing_a_refresh_token_ends_its_session() -> None:
    app = auth_app(REFRESH_REUSE_GRACE=0)  # any reuse is one: no waiting out a grace window
    client = anonymous(app)
    register(client)
    stolen = login(client)
    other_session = login(client)
    renewed = refresh(client, stolen["refresh_token"]).get_json()
    assert me(client, renewed["access_token"]).status_code == 200

    reused = refresh(client, stolen["refresh_token"])
    assert_invalid_token(reused)
    assert works(client, renewed) == (False, False)  # the family: newest tokens included
    assert_invalid_token(me(client, stolen["access_token"]))
    assert works(client, other_session) == (True, True)  # another login is another family
    event = audit_rows(app)[-1]
    assert event.action == "user.refresh_token_reused"
    assert event.changes["session"]["after"] == claims_of(stolen["refresh_token"])["sid"]


def test_reuse_is_refused_under_the_production_configuration() -> None:
    app = auth_app("production", REFRESH_REUSE_GRACE=0)
    client = anonymous(app)
    register(client)
    tokens = login(client)
    renewed = refresh(client, tokens["refresh_token"]).get_json()
    assert_invalid_token(refresh(client, tokens["refresh_token"]))
    assert_invalid_token(me(client, renewed["access_token"]))
    assert_invalid_token(refresh(client, renewed["refresh_token"]))


def test_a_retry_within_the_grace_window_gets_a_new_pair() -> None:
    app = auth_app(REFRESH_REUSE_GRACE=60)
    client = anonymous(app)
    register(client)
    first = login(client)
    lost = refresh(client, first["refresh_token"]).get_json()  # the client never got this answer
    retried = refresh(client, first["refresh_token"])
    assert retried.status_code == 200
    kept = retried.get_json()
    assert kept["refresh_token"] != lost["refresh_token"]
    assert me(client, kept["access_token"]).status_code == 200
    later = refresh(client, kept["refresh_token"])
    assert later.status_code == 200
    assert not any(row.action == "user.refresh_token_reused" for row in audit_rows(app))

    # The successor the client never saw is retired: whoever presents it is not the client,
    # so it counts as a reuse and the session ends.
    assert_invalid_token(refresh(client, lost["refresh_token"]))
    assert works(client, later.get_json()) == (False, False)


def test_a_retry_after_the_successor_was_used_is_a_reuse() -> None:
    app = auth_app(REFRESH_REUSE_GRACE=60)
    client = anonymous(app)
    register(client)
    first = login(client)
    second = refresh(client, first["refresh_token"]).get_json()
    third = refresh(client, second["refresh_token"]).get_json()
    assert_invalid_token(refresh(client, first["refresh_token"]))
    assert works(client, third) == (False, False)
    assert audit_rows(app)[-1].action == "user.refresh_token_reused"


def test_an_expired_refresh_token_is_refused_and_harms_nothing() -> None:
    app = auth_app()
    client = anonymous(app)
    register(client)
    tokens = login(client)
    claims = claims_of(tokens["refresh_token"])
    now = int(time.time())
    expired = signed(app, {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 60})
    response = refresh(client, expired)
    assert_invalid_token(response)
    assert "expired" in response.get_json()["detail"]
    # Same jti, same session: the refusal came before any look-up, so nothing counts as a reuse.
    assert refresh(client, tokens["refresh_token"]).status_code == 200


# --- Revocation across workers ---------------------------------------------------------------


def test_logout_reaches_every_worker_through_redis(
    redis_settings: dict[str, str], request: pytest.FixtureRequest
) -> None:
    first = auth_app(**redis_settings)
    second = worker_app(first, request)
    one, two = anonymous(first), anonymous(second)
    register(one)
    leaving, staying = login(one), login(two)
    assert me(two, leaving["access_token"]).status_code == 200

    assert (
        one.post("/api/v2/auth/logout", headers=bearer(leaving["access_token"])).status_code == 204
    )
    assert_invalid_token(me(two, leaving["access_token"]))
    assert me(two, staying["access_token"]).status_code == 200
    store = redis.Redis.from_url(redis_settings["REDIS_URL"])
    try:
        key = f"{redis_settings['REDIS_KEY_PREFIX']}revoked-session:"
        key += claims_of(leaving["access_token"])["sid"]
        # Kept as long as an access token of the session could still be valid, not forever.
        assert 0 < store.ttl(key) <= first.config["ACCESS_TOKEN_TTL"] + 60
    finally:
        store.close()

    everywhere = two.post("/api/v2/auth/logout-everywhere", headers=bearer(staying["access_token"]))
    assert everywhere.status_code == 204
    assert_invalid_token(me(one, staying["access_token"]))


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_revocation_falls_back_to_the_database_without_redis(
    request: pytest.FixtureRequest,
) -> None:
    first = auth_app(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0", REFRESH_REUSE_GRACE=0)
    second = worker_app(first, request)
    one, two = anonymous(first), anonymous(second)
    register(one)
    started = time.perf_counter()
    leaving, staying = login(one), login(one)
    assert me(two, leaving["access_token"]).status_code == 200
    assert (
        one.post("/api/v2/auth/logout", headers=bearer(leaving["access_token"])).status_code == 204
    )
    assert_invalid_token(me(one, leaving["access_token"]))
    assert_invalid_token(me(two, leaving["access_token"]))  # the database says so
    assert me(two, staying["access_token"]).status_code == 200
    renewed = refresh(two, staying["refresh_token"]).get_json()
    assert_invalid_token(refresh(one, staying["refresh_token"]))  # a reuse: the session ends
    assert_invalid_token(me(two, renewed["access_token"]))
    # Redis down costs no retries with back-off on each request.
    assert time.perf_counter() - started < 2


# --- Signing key rotation --------------------------------------------------------------------


def test_key_rotation_end_to_end(tmp_path: Path) -> None:
    keys = tmp_path / "jwt-keys"
    first_kid = rotate(keys)
    app = auth_app(JWT_KEYS_DIR=str(keys))
    # A worker looks at the key directory every RELOAD_INTERVAL_SECONDS: its clock is ours here.
    clock = [0.0]
    app.extensions[EXTENSION_NAME] = KeyRing(keys, clock=lambda: clock[0])
    client = anonymous(app)
    register(client)
    before = login(client)
    assert jwt.get_unverified_header(before["access_token"])["kid"] == first_kid

    runner = app.test_cli_runner()
    rotated = runner.invoke(args=["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    new_kid = rotated.stdout.strip()
    assert new_kid != first_kid
    clock[0] += RELOAD_INTERVAL_SECONDS

    after = login(client)
    assert jwt.get_unverified_header(after["access_token"])["kid"] == new_kid
    assert me(client, before["access_token"]).status_code == 200  # the old key still verifies
    assert me(client, after["access_token"]).status_code == 200
    jwks = client.get("/.well-known/jwks.json").get_json()
    assert [key["kid"] for key in jwks["keys"]] == [first_kid, new_kid]
    listed = runner.invoke(args=["keys", "list"]).stdout.splitlines()
    assert [line.split()[0] for line in listed] == [first_kid, new_kid]
    assert listed[-1].endswith("signs")
    renewed = refresh(client, before["refresh_token"])  # signed by the old key
    assert renewed.status_code == 200
    assert jwt.get_unverified_header(renewed.get_json()["access_token"])["kid"] == new_kid

    # After a leak: prune the old key at once; what it signed stops working.
    pruned = runner.invoke(args=["keys", "prune", "--keep-seconds", "0"])
    assert pruned.exit_code == 0, pruned.output
    assert pruned.stdout.split() == [first_kid]
    clock[0] += RELOAD_INTERVAL_SECONDS
    assert_invalid_token(me(client, before["access_token"]))
    assert me(client, after["access_token"]).status_code == 200
    jwks = client.get("/.well-known/jwks.json").get_json()
    assert [key["kid"] for key in jwks["keys"]] == [new_kid]
