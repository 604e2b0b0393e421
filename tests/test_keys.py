"""Token signing keys: the key directory, the key ring a process holds, `flask keys`, and tokens
signed and verified with them through PyJWT (what flask-jwt-extended calls)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask

from app import create_app
from app.auth.keys import (
    KeyRing,
    NoSigningKeyError,
    UnknownKeyError,
    init_key_ring,
    key_ring,
    load_keys,
    prune,
    rotate,
)
from app.auth.keys_cli import register_keys_cli
from app.config import ConfigError
from tests.conftest import PRODUCTION_TEST_SECRET
from tests.databases import fresh_databases

T0 = datetime(2025, 3, 14, 10, 15, tzinfo=UTC)
DAY = 24 * 3600


class FakeClock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sign(ring: KeyRing, claims: dict[str, Any] | None = None) -> str:
    key = ring.signing_key()
    return jwt.encode(
        claims or {"sub": "user-1"}, key.private_key, algorithm="EdDSA", headers={"kid": key.kid}
    )


def verify(ring: KeyRing, token: str) -> dict[str, Any]:
    """What the app does: the key named by the token's kid, and EdDSA only."""
    key = ring.decode_key(jwt.get_unverified_header(token))
    return jwt.decode(token, key, algorithms=["EdDSA"])


def pem_of(private_key: Any, encryption: Any = None) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


def write_key_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- The directory ---


def test_rotate_writes_an_owner_only_ed25519_pem_named_after_its_kid(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    kid = rotate(directory, now=T0)

    assert kid.startswith("20250314T101500.000000Z-")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert [p.name for p in directory.iterdir()] == [f"{kid}.pem"]  # no temporary file left
    key_file = directory / f"{kid}.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert isinstance(serialization.load_pem_private_key(pem, None), Ed25519PrivateKey)
    [loaded] = load_keys(directory)
    assert (loaded.kid, loaded.created) == (kid, T0)


def test_the_newest_key_sorts_last_even_within_one_tick_or_with_a_clock_gone_back(
    tmp_path: Path,
) -> None:
    first = rotate(tmp_path, now=T0)
    same_instant = rotate(tmp_path, now=T0)
    earlier = rotate(tmp_path, now=T0 - timedelta(hours=1))

    ring = KeyRing(tmp_path)
    assert ring.kids == (first, same_instant, earlier)
    assert sorted(ring.kids) == list(ring.kids)  # kids sort by age
    assert ring.signing_key().kid == earlier
    assert len(set(ring.kids)) == 3


def test_key_files_are_written_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        kid = rotate(tmp_path / "keys")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / f"{kid}.pem").stat().st_mode) == 0o600


def test_rotate_needs_an_aware_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rotate(tmp_path, now=datetime(2025, 1, 1))


def test_prune_deletes_keys_superseded_longer_ago_than_kept(tmp_path: Path) -> None:
    first = rotate(tmp_path, now=T0)
    second = rotate(tmp_path, now=T0 + timedelta(days=1))  # supersedes first at T0 + 1 day
    third = rotate(tmp_path, now=T0 + timedelta(days=10))  # supersedes second at T0 + 10 days
    keep = 5 * DAY

    superseded_first = T0 + timedelta(days=1)
    assert prune(tmp_path, keep_seconds=keep, now=superseded_first + timedelta(seconds=keep)) == []
    assert prune(
        tmp_path, keep_seconds=keep, now=superseded_first + timedelta(seconds=keep, microseconds=1)
    ) == [first]
    assert [key.kid for key in load_keys(tmp_path)] == [second, third]

    # However long ago, the newest key stays: it is the one signing.
    far_future = T0 + timedelta(days=3650)
    assert prune(tmp_path, keep_seconds=0, now=far_future) == [second]
    assert [key.kid for key in load_keys(tmp_path)] == [third]
    assert prune(tmp_path, keep_seconds=0, now=far_future) == []


def test_prune_leaves_files_that_are_not_keys_alone(tmp_path: Path) -> None:
    rotate(tmp_path, now=T0)
    rotate(tmp_path, now=T0 + timedelta(days=1))
    (tmp_path / "README").write_text("keys for the API\n")
    write_key_file(tmp_path / "broken.pem", b"not a key")

    assert len(prune(tmp_path, keep_seconds=0, now=T0 + timedelta(days=2))) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("2")) == [
        "README",
        "broken.pem",
    ]


def test_unusable_files_are_skipped_with_a_warning_naming_the_file_not_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = rotate(tmp_path, now=T0)
    exposed_pem = pem_of(Ed25519PrivateKey.generate())
    files = {
        "corrupt.pem": (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0o600),
        "rsa.pem": (pem_of(rsa.generate_private_key(public_exponent=65537, key_size=1024)), 0o600),
        "encrypted.pem": (
            pem_of(
                Ed25519PrivateKey.generate(), serialization.BestAvailableEncryption(b"passphrase")
            ),
            0o600,
        ),
        "readable-by-others.pem": (exposed_pem, 0o644),
        "huge.pem": (b"A" * 10_000, 0o600),
        "bad name!.pem": (pem_of(Ed25519PrivateKey.generate()), 0o600),
    }
    for name, (data, mode) in files.items():
        write_key_file(tmp_path / name, data, mode)
    (tmp_path / "a-directory.pem").mkdir()
    os.mkfifo(tmp_path / "a-fifo.pem", 0o600)  # opening it must not block

    with caplog.at_level(logging.WARNING, logger="app.auth.keys"):
        ring = KeyRing(tmp_path)

    assert ring.kids == (good,)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in [*files, "a-directory.pem", "a-fifo.pem"]:
        assert any(str(tmp_path / name) in message for message in warnings), name
    assert any("chmod 600" in message for message in warnings)
    body = b"".join(exposed_pem.splitlines()[1:-1]).decode()
    assert body[:20] not in caplog.text


def test_a_group_writable_directory_gets_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rotate(tmp_path / "keys")
    (tmp_path / "keys").chmod(0o770)
    with caplog.at_level(logging.WARNING, logger="app.auth.keys"):
        KeyRing(tmp_path / "keys")
    assert "writable by group or others" in caplog.text


# --- The ring ---


def test_an_empty_or_missing_directory_has_no_signing_key(tmp_path: Path) -> None:
    for ring in (KeyRing(tmp_path), KeyRing(tmp_path / "missing")):
        assert ring.kids == ()
        assert ring.jwks() == {"keys": []}
        with pytest.raises(NoSigningKeyError, match="flask keys rotate"):
            ring.signing_key()


@pytest.mark.parametrize(
    "kid",
    [
        None,
        "",
        17,
        ["20250314T101500.000000Z-00000000"],
        "../../etc/passwd",
        ".hidden",
        "x" * 65,
        "kid with spaces",
        "20250314T101500.000000Z-00000000",  # well formed, not ours
    ],
)
def test_a_kid_that_names_no_key_of_ours_finds_none(tmp_path: Path, kid: Any) -> None:
    rotate(tmp_path)
    ring = KeyRing(tmp_path)
    assert ring.verification_key(kid) is None
    with pytest.raises(UnknownKeyError):
        ring.decode_key({"kid": kid})


def test_the_ring_picks_up_a_rotation_after_its_check_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    old = rotate(tmp_path, now=T0)
    ring = KeyRing(tmp_path, clock=clock, check_interval=2.0)
    old_token = sign(ring)

    new = rotate(tmp_path, now=T0 + timedelta(days=1))
    clock.advance(1.9)
    assert ring.signing_key().kid == old  # not looked at yet: at most one stat per interval
    clock.advance(0.2)
    assert ring.signing_key().kid == new
    assert ring.kids == (old, new)

    new_token = sign(ring)
    assert jwt.get_unverified_header(new_token)["kid"] == new
    assert jwt.get_unverified_header(old_token)["kid"] == old
    assert verify(ring, old_token) == {"sub": "user-1"}  # old tokens still verify
    assert verify(ring, new_token) == {"sub": "user-1"}

    assert prune(tmp_path, keep_seconds=0) == [old]
    clock.advance(2.0)
    with pytest.raises(UnknownKeyError):
        verify(ring, old_token)  # pruned: its tokens are refused
    assert verify(ring, new_token) == {"sub": "user-1"}


def test_a_second_ring_on_the_same_directory_verifies_the_first_rings_tokens(
    tmp_path: Path,
) -> None:
    rotate(tmp_path)
    signer, verifier = KeyRing(tmp_path), KeyRing(tmp_path)
    assert verify(verifier, sign(signer, {"sub": "u", "n": 1})) == {"sub": "u", "n": 1}


def test_a_directory_emptied_by_mistake_keeps_the_keys_loaded_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    kid = rotate(tmp_path)
    ring = KeyRing(tmp_path, clock=clock)
    token = sign(ring)

    (tmp_path / f"{kid}.pem").unlink()
    clock.advance(10)
    with caplog.at_level(logging.ERROR, logger="app.auth.keys"):
        assert ring.signing_key().kid == kid
    assert "no usable key" in caplog.text
    assert verify(ring, token)["sub"] == "user-1"


def test_reload_reads_the_directory_at_once(tmp_path: Path) -> None:
    rotate(tmp_path, now=T0)
    ring = KeyRing(tmp_path, clock=FakeClock())
    new = rotate(tmp_path, now=T0 + timedelta(seconds=1))
    ring.reload()
    assert ring.signing_key().kid == new


def test_an_in_memory_ring_holds_the_keys_it_is_given(tmp_path: Path) -> None:
    rotate(tmp_path)
    [stored] = load_keys(tmp_path)
    ring = KeyRing(None, keys=[stored])
    assert ring.directory is None
    assert ring.signing_key() is stored
    with pytest.raises(ValueError, match="not both"):
        KeyRing(tmp_path, keys=[stored])


# --- Tokens: what verification refuses ---


def test_tokens_not_signed_by_a_key_of_ours_are_refused(tmp_path: Path) -> None:
    rotate(tmp_path)
    ring = KeyRing(tmp_path)
    ours = ring.signing_key()
    claims = {"sub": "admin"}

    no_kid = jwt.encode(claims, ours.private_key, algorithm="EdDSA")
    with pytest.raises(UnknownKeyError):
        verify(ring, no_kid)

    unknown_kid = jwt.encode(claims, ours.private_key, algorithm="EdDSA", headers={"kid": "other"})
    with pytest.raises(UnknownKeyError):
        verify(ring, unknown_kid)

    # A right kid on a token signed by another key.
    forged = jwt.encode(
        claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": ours.kid}
    )
    with pytest.raises(jwt.InvalidSignatureError):
        verify(ring, forged)

    # alg "none": no signature at all.
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": ours.kid})
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(ring, unsigned)

    # The classic confusion: HMAC keyed with the public key, which anyone can get from the JWKS.
    public_raw = ours.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    header = b64url(b'{"alg":"HS256","typ":"JWT","kid":"' + ours.kid.encode() + b'"}')
    payload = b64url(b'{"sub":"admin"}')
    signature = hmac.new(public_raw, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    confused = f"{header}.{payload}.{b64url(signature)}"
    with pytest.raises(jwt.InvalidAlgorithmError):
        verify(ring, confused)

    # Every refusal is an InvalidTokenError: flask-jwt-extended turns those into 401s.
    for token in (no_kid, unknown_kid, forged, unsigned, confused):
        with pytest.raises(jwt.InvalidTokenError):
            verify(ring, token)


def test_the_jwks_publishes_each_public_key_as_an_okp_jwk(tmp_path: Path) -> None:
    clock = FakeClock()
    rotate(tmp_path, now=T0)
    rotate(tmp_path, now=T0 + timedelta(days=1))
    ring = KeyRing(tmp_path, clock=clock)

    jwks = ring.jwks()
    assert list(jwks) == ["keys"]
    assert [jwk["kid"] for jwk in jwks["keys"]] == list(ring.kids)
    for jwk, key in zip(jwks["keys"], ring.keys(), strict=True):
        assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}  # no "d": nothing private
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == (
            "OKP",
            "Ed25519",
            "sig",
            "EdDSA",
        )
        assert "=" not in jwk["x"]
        raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        assert raw == key.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    # A client that knows only the JWKS verifies our tokens (PyJWT's own JWK parser).
    token = sign(ring)
    by_kid = {jwk["kid"]: jwt.PyJWK(jwk) for jwk in jwks["keys"]}
    published = by_kid[jwt.get_unverified_header(token)["kid"]]
    assert jwt.decode(token, published.key, algorithms=["EdDSA"]) == {"sub": "user-1"}

    jwks["keys"].clear()  # callers get a copy
    assert len(ring.jwks()["keys"]) == 2


# --- The app's ring ---


def bare_app(tmp_path: Path, env: str, **config: Any) -> Flask:
    """An app with only the settings the key ring reads (its instance folder in tmp_path)."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update({"APP_ENV": env, "JWT_KEYS_DIR": None, **config})
    return app


def test_testing_without_a_directory_signs_with_one_in_memory_key_per_process(
    tmp_path: Path,
) -> None:
    first, second = bare_app(tmp_path, "testing"), bare_app(tmp_path, "testing")
    ring = init_key_ring(first)
    init_key_ring(second)

    assert ring.directory is None
    assert key_ring(first).signing_key() is key_ring(second).signing_key()
    assert not (tmp_path / "instance").exists()  # no file written
    with first.app_context():
        assert key_ring() is ring


def test_development_creates_its_first_key_in_the_instance_folder(tmp_path: Path) -> None:
    app = bare_app(tmp_path, "development")
    ring = init_key_ring(app)

    directory = tmp_path / "instance" / "jwt-keys"
    assert ring.directory == directory
    assert [p.name for p in directory.iterdir()] == [f"{ring.signing_key().kid}.pem"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    # The next start uses that key rather than adding one.
    assert init_key_ring(bare_app(tmp_path, "development")).kids == ring.kids


def test_testing_with_a_directory_uses_and_fills_it(tmp_path: Path) -> None:
    ring = init_key_ring(bare_app(tmp_path, "testing", JWT_KEYS_DIR=str(tmp_path / "keys")))
    assert ring.directory == tmp_path / "keys"
    assert len(load_keys(tmp_path / "keys")) == 1


def test_key_ring_of_an_app_without_one_says_so(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="init_key_ring"):
        key_ring(bare_app(tmp_path, "testing"))


@pytest.fixture
def in_flask_cli(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process is a `flask <command>` one, as the flask CLI marks it."""
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
    return monkeypatch


@pytest.fixture
def full_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Flask]]:
    """``full_app(env, **settings)``: create_app on fresh databases, closed afterwards."""
    apps: list[Flask] = []

    def build(env: str, **settings: Any) -> Flask:
        config: dict[str, Any] = {"APP_ENV": env, **fresh_databases()}
        if env == "production":
            config["SECRET_KEY"] = PRODUCTION_TEST_SECRET
            config["BACKUP_DIR"] = str(tmp_path_factory.mktemp("backups"))  # production needs it
        config.update(settings)
        app = create_app(config)
        apps.append(app)
        if "keys" not in app.cli.commands:  # until register_cli adds the group
            register_keys_cli(app)
        return app

    yield build
    for app in apps:
        app.extensions["shards"].dispose()


def test_production_refuses_to_start_without_a_signing_key(
    tmp_path: Path, full_app: Callable[..., Flask]
) -> None:
    keys_dir = tmp_path / "keys"
    with pytest.raises(ConfigError, match="no usable signing key .*`flask keys rotate`"):
        full_app("production", JWT_KEYS_DIR=str(keys_dir))
    assert not keys_dir.exists()  # production never makes its own key

    keys_dir.mkdir()
    write_key_file(keys_dir / "corrupt.pem", b"garbage")
    with pytest.raises(ConfigError, match="no usable signing key"):
        full_app("production", JWT_KEYS_DIR=str(keys_dir))

    kid = rotate(keys_dir)
    assert key_ring(full_app("production", JWT_KEYS_DIR=str(keys_dir))).signing_key().kid == kid


def test_production_init_key_ring_refuses_under_flask_run(
    tmp_path: Path, in_flask_cli: pytest.MonkeyPatch
) -> None:
    app = bare_app(tmp_path, "production", JWT_KEYS_DIR=str(tmp_path / "keys"))
    with click.Context(click.Command("run")), pytest.raises(ConfigError):
        init_key_ring(app)
    in_flask_cli.delenv("FLASK_RUN_FROM_CLI")  # a WSGI server
    with pytest.raises(ConfigError):
        init_key_ring(app)


def test_production_flask_keys_rotate_makes_the_first_key(
    tmp_path: Path, in_flask_cli: pytest.MonkeyPatch, full_app: Callable[..., Flask]
) -> None:
    keys_dir = tmp_path / "keys"
    app = full_app("production", JWT_KEYS_DIR=str(keys_dir))  # `flask` commands start without
    assert key_ring(app).kids == ()

    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    kid = result.stdout.strip()
    assert [key.kid for key in load_keys(keys_dir)] == [kid]
    listed = app.test_cli_runner().invoke(args=["keys", "list"]).stdout
    assert listed.split()[::2] == [kid, "signs"]

    in_flask_cli.delenv("FLASK_RUN_FROM_CLI")
    server = full_app("production", JWT_KEYS_DIR=str(keys_dir))  # now a server starts
    assert key_ring(server).signing_key().kid == kid


def test_flask_keys_rotate_list_and_prune(tmp_path: Path, full_app: Callable[..., Flask]) -> None:
    keys_dir = tmp_path / "keys"
    now = datetime.now(UTC)
    oldest = rotate(keys_dir, now=now - timedelta(days=40))
    older = rotate(keys_dir, now=now - timedelta(days=20))  # supersedes oldest 20 days ago
    app = full_app("testing", JWT_KEYS_DIR=str(keys_dir))
    runner = app.test_cli_runner()

    result = runner.invoke(args=["keys", "rotate"])  # supersedes older now
    assert result.exit_code == 0, result.output
    newest = result.stdout.strip()
    assert newest > older

    listed = runner.invoke(args=["keys", "list"]).stdout.splitlines()
    assert [line.split()[0] for line in listed] == [oldest, older, newest]
    assert [line.split()[2] for line in listed] == ["verifies", "verifies", "signs"]
    assert listed[0].split()[1] == (now - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ")

    # Default: ACCESS_TOKEN_TTL + REFRESH_TOKEN_TTL (14 days and 15 minutes).
    result = runner.invoke(args=["keys", "prune"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [oldest]
    assert "superseded more than 1210500 seconds ago" in result.stderr

    result = runner.invoke(args=["keys", "prune", "--keep-seconds", "0"])
    assert result.stdout.split() == [older]
    assert [key.kid for key in load_keys(keys_dir)] == [newest]

    assert runner.invoke(args=["keys", "prune", "--keep-seconds", "-1"]).exit_code == 2


def with_keys_cli(app: Flask) -> Flask:
    register_keys_cli(app)
    return app


def test_flask_keys_list_of_an_empty_directory(tmp_path: Path) -> None:
    app = with_keys_cli(bare_app(tmp_path, "production", JWT_KEYS_DIR=str(tmp_path / "keys")))
    result = app.test_cli_runner().invoke(args=["keys", "list"])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No signing key" in result.stderr


def test_flask_keys_in_testing_needs_a_directory(tmp_path: Path) -> None:
    app = with_keys_cli(bare_app(tmp_path, "testing"))
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 1
    assert "JWT_KEYS_DIR is not set" in result.output
    assert not (tmp_path / "instance").exists()
