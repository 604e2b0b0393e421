"""The signing keys of access and refresh tokens: Ed25519 (JWS ``alg`` EdDSA), each with a ``kid``.

Keys live in a directory (``JWT_KEYS_DIR``, default ``<instance>/jwt-keys``), one unencrypted
PKCS#8 PEM file per key, named ``<kid>.pem``, readable by its owner only (0600). The newest key
signs; every key in the directory verifies, so tokens signed before a rotation stay valid until
their key is pruned. Key ids are the creation time and a random suffix
(``20250314T101500.123456Z-1a2b3c4d``): they sort by age, and they reveal nothing about the key.

    rotate(directory)                    add a key; it signs from then on (``flask keys rotate``)
    prune(directory, keep_seconds=...)   delete keys superseded more than keep_seconds ago

Every worker process holds a ``KeyRing``. It re-reads the directory when the directory changes,
noticed by one ``os.stat`` at most every ``RELOAD_INTERVAL_SECONDS``: a rotation reaches every
worker within that delay, without a restart. A file that is not a usable key (corrupt, another key
type, encrypted, readable by others) is skipped with a warning naming the file, never its content.

Startup (``init_key_ring``): development and testing create a key when the directory has none, so
a first run needs no setup; production refuses to serve requests without a key. The testing
profile with ``JWT_KEYS_DIR`` unset signs with one key made in memory once per process: the suite
creates hundreds of apps and touches no key files (tests of the directory set ``JWT_KEYS_DIR``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

import click
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import Flask, current_app

from app.config import ENV_VAR, ConfigError

logger = logging.getLogger(__name__)

EXTENSION_NAME = "jwt_key_ring"
DEFAULT_DIRECTORY_NAME = "jwt-keys"  # under the instance folder when JWT_KEYS_DIR is unset
KEY_FILE_SUFFIX = ".pem"
ALGORITHM = "EdDSA"
# How stale a worker's view of the directory may get: the delay before a rotation signs everywhere.
RELOAD_INTERVAL_SECONDS = 2.0
# A key id: what we generate, or what an operator named an imported key. No "/" and no leading
# dot (the file name is "<kid>.pem"), and short: a token header's kid is attacker input.
MAX_KID_LENGTH = 64
KID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_GENERATED_KID = re.compile(r"(?P<created>\d{8}T\d{6}\.\d{6}Z)-[0-9a-f]{8}")
_KID_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
# An Ed25519 PKCS#8 PEM is 119 bytes; anything much larger is not one of ours.
MAX_KEY_FILE_BYTES = 4096
# Directory timestamps are only so fine: a change this recent may hide a second one in the same
# tick, so a directory modified this recently is read again at the next check.
_RACY_MTIME_NS = 2_000_000_000


class NoSigningKeyError(RuntimeError):
    """The key ring has no key to sign with."""


class UnknownKeyError(jwt.InvalidTokenError):
    """A token names no key we hold (unknown, malformed or missing ``kid``).

    A subclass of PyJWT's ``InvalidTokenError``, so flask-jwt-extended answers it like any other
    invalid token (PyJWT raises ``InvalidKeyError``, not an ``InvalidTokenError``, for a key of
    None, which would end as a 500).
    """


@dataclass(frozen=True)
class SigningKey:
    """One key of the ring. ``created`` is when it was made (from its kid, or its file's mtime)."""

    kid: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    created: datetime
    public_key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Derived once: verification looks it up on every request.
        object.__setattr__(self, "public_key", self.private_key.public_key())

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 8037: an OKP key on the Ed25519 curve)."""
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"),
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
        }


def is_valid_kid(kid: object) -> TypeGuard[str]:
    return isinstance(kid, str) and len(kid) <= MAX_KID_LENGTH and bool(KID_PATTERN.fullmatch(kid))


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _created_from_kid(kid: str) -> datetime | None:
    match = _GENERATED_KID.fullmatch(kid)
    if match is None:
        return None
    try:
        return datetime.strptime(match["created"], _KID_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # the right shape, but no such date
        return None


def _new_kid(created: datetime) -> str:
    return f"{created.strftime(_KID_TIME_FORMAT)}-{secrets.token_hex(4)}"


# --- Reading the directory ---


def _read_key_file(path: Path, kid: str) -> SigningKey | None:
    """The key in ``path``, or None (with a warning naming the file) when it is not usable."""
    # O_NONBLOCK: a FIFO named like a key must not hang the worker that opens it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        logger.warning("skipped signing key file %s: cannot open it (%s)", path, exc.strerror)
        return None
    try:
        # fstat of the open file: what we check is what we read.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            logger.warning("skipped signing key file %s: not a regular file", path)
            return None
        if os.name == "posix" and info.st_mode & 0o077:
            logger.warning(
                "skipped signing key file %s: readable or writable by group or others "
                "(mode %03o; run chmod 600 on it)",
                path,
                stat.S_IMODE(info.st_mode),
            )
            return None
        data = b""
        while len(data) <= MAX_KEY_FILE_BYTES:
            chunk = os.read(fd, MAX_KEY_FILE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        logger.warning("skipped signing key file %s: cannot read it (%s)", path, exc.strerror)
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        logger.warning("skipped signing key file %s: larger than an Ed25519 key", path)
        return None
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # The exception's text is not logged: it could quote the file.
        logger.warning(
            "skipped signing key file %s: not an unencrypted PEM private key (%s)",
            path,
            type(exc).__name__,
        )
        return None
    if not isinstance(private_key, Ed25519PrivateKey):
        logger.warning(
            "skipped signing key file %s: not an Ed25519 key (%s)", path, type(private_key).__name__
        )
        return None
    created = _created_from_kid(kid) or datetime.fromtimestamp(info.st_mtime, UTC)
    return SigningKey(kid=kid, private_key=private_key, created=created)


def load_keys(directory: str | os.PathLike[str]) -> list[SigningKey]:
    """The usable keys in ``directory``, oldest first (the last one signs). Missing: none."""
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    keys: list[SigningKey] = []
    for name in names:
        if not name.endswith(KEY_FILE_SUFFIX) or name.startswith("."):
            continue  # temporary files of a rotation in progress, notes, anything else
        kid = name[: -len(KEY_FILE_SUFFIX)]
        if not is_valid_kid(kid):
            logger.warning(
                "skipped signing key file %s: its name is not a valid key id "
                "(letters, digits, '.', '_', '-', at most %d)",
                directory / name,
                MAX_KID_LENGTH,
            )
            continue
        key = _read_key_file(directory / name, kid)
        if key is not None:
            keys.append(key)
    keys.sort(key=lambda key: (key.created, key.kid))
    return keys


def _warn_if_shared(directory: Path, info: os.stat_result) -> None:
    if os.name == "posix" and info.st_mode & 0o022:
        logger.warning(
            "signing key directory %s is writable by group or others: whoever can write there "
            "can add a key the API trusts (run chmod 700 on it)",
            directory,
        )


# --- Writing the directory ---


def _ensure_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return  # the operator's directory: its mode is theirs (loading warns if it is shared)
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def _fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (POSIX; a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_key_file(directory: Path, key: SigningKey) -> None:
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    final = directory / f"{key.kid}{KEY_FILE_SUFFIX}"
    # A dot name without the suffix: loaders ignore it until the rename makes it whole.
    temporary = directory / f".{key.kid}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            if os.name == "posix":
                os.fchmod(file.fileno(), 0o600)  # whatever the umask
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


def rotate(directory: str | os.PathLike[str], *, now: datetime | None = None) -> str:
    """Add a new key to ``directory`` (created if missing, mode 0700); return its kid.

    It signs from then on: in other processes within ``RELOAD_INTERVAL_SECONDS``. Its creation
    time is after every existing key's, even if the clock went back, so it sorts newest.
    """
    directory = Path(directory)
    _ensure_directory(directory)
    created = _utc(now)
    existing = load_keys(directory)
    if existing and created <= existing[-1].created:
        created = existing[-1].created + timedelta(microseconds=1)
    key = SigningKey(
        kid=_new_kid(created), private_key=Ed25519PrivateKey.generate(), created=created
    )
    _write_key_file(directory, key)
    logger.info("added signing key %s in %s", key.kid, directory)
    return key.kid


def prune(
    directory: str | os.PathLike[str], *, keep_seconds: float, now: datetime | None = None
) -> list[str]:
    """Delete the keys superseded more than ``keep_seconds`` ago; return their kids.

    A key is superseded when the next newer key was created: from then on it signs nothing, and
    the tokens it signed expire within the longest token lifetime. So ``keep_seconds`` should be
    at least that lifetime plus ``RELOAD_INTERVAL_SECONDS``. The newest key is never deleted.
    Files that are not usable keys are left alone.
    """
    if keep_seconds < 0:
        raise ValueError("keep_seconds must not be negative")
    directory = Path(directory)
    cutoff = _utc(now) - timedelta(seconds=keep_seconds)
    keys = load_keys(directory)
    removed: list[str] = []
    for key, successor in zip(keys, keys[1:], strict=False):
        if successor.created < cutoff:
            try:
                (directory / f"{key.kid}{KEY_FILE_SUFFIX}").unlink()
            except FileNotFoundError:
                continue  # another process pruned it first
            removed.append(key.kid)
            logger.info("deleted signing key %s from %s", key.kid, directory)
    if removed:
        _fsync_directory(directory)
    return removed


# --- The ring a process signs and verifies with ---


@dataclass(frozen=True)
class _Snapshot:
    keys: tuple[SigningKey, ...]  # oldest first
    by_kid: Mapping[str, SigningKey]

    @classmethod
    def of(cls, keys: Iterable[SigningKey]) -> _Snapshot:
        ordered = tuple(sorted(keys, key=lambda key: (key.created, key.kid)))
        return cls(keys=ordered, by_kid={key.kid: key for key in ordered})


class KeyRing:
    """The keys one process signs and verifies tokens with.

    ``KeyRing(directory)`` reads the directory now, then again whenever its mtime changes, checked
    at most every ``check_interval`` seconds of ``clock`` (injectable for tests). If a re-read finds
    no usable key (the files were deleted or damaged), the keys already loaded stay in use.
    ``KeyRing(None, keys=[...])`` holds fixed keys and reads nothing.

    Safe to share between threads: readers see one immutable snapshot or the next.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        *,
        keys: Iterable[SigningKey] = (),
        clock: Callable[[], float] = time.monotonic,
        check_interval: float = RELOAD_INTERVAL_SECONDS,
    ) -> None:
        self._directory = None if directory is None else Path(directory)
        self._clock = clock
        self._check_interval = check_interval
        self._lock = threading.Lock()
        self._seen_mtime_ns: int | None = None
        self._reread_next_check = False
        self._reported: str | None = None
        self._next_check = clock() + check_interval
        self._snapshot = _Snapshot.of(keys)
        if self._directory is not None:
            if self._snapshot.keys:
                raise ValueError("give a directory or keys, not both")
            with self._lock:
                self._reload_locked(keep_previous=False)

    @property
    def directory(self) -> Path | None:
        return self._directory

    @property
    def kids(self) -> tuple[str, ...]:
        """The key ids, oldest first: the last one signs."""
        return tuple(key.kid for key in self._current().keys)

    def keys(self) -> tuple[SigningKey, ...]:
        """The keys, oldest first: the last one signs."""
        return self._current().keys

    def signing_key(self) -> SigningKey:
        """The newest key: new tokens are signed with it and carry its kid."""
        keys = self._current().keys
        if not keys:
            where = self._directory if self._directory is not None else "this key ring"
            raise NoSigningKeyError(f"no signing key in {where}: run `flask keys rotate`")
        return keys[-1]

    def verification_key(self, kid: object) -> Ed25519PublicKey | None:
        """The public key named ``kid`` (a token header's value, so any JSON), or None."""
        if not is_valid_kid(kid):
            return None
        key = self._current().by_kid.get(kid)
        return None if key is None else key.public_key

    def decode_key(self, header: Mapping[str, Any]) -> Ed25519PublicKey:
        """The key to verify a token with this (unverified) header; ``UnknownKeyError`` if none."""
        key = self.verification_key(header.get("kid"))
        if key is None:
            raise UnknownKeyError("the token's signing key is unknown")
        return key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """A JWK Set (RFC 7517) of every public key: what a client needs to verify our tokens."""
        return {"keys": [key.jwk() for key in self._current().keys]}

    def reload(self) -> None:
        """Read the directory now, whatever the clock says."""
        if self._directory is None:
            return
        with self._lock:
            self._next_check = self._clock() + self._check_interval
            self._reload_locked(keep_previous=True)

    def _current(self) -> _Snapshot:
        if self._directory is not None and self._clock() >= self._next_check:
            self._check_directory()
        return self._snapshot

    def _check_directory(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next_check:
                return  # another thread checked while we waited for the lock
            self._next_check = now + self._check_interval
            assert self._directory is not None
            try:
                mtime_ns = os.stat(self._directory).st_mtime_ns
            except OSError:
                mtime_ns = None
            unchanged = mtime_ns is not None and mtime_ns == self._seen_mtime_ns
            if unchanged and not self._reread_next_check:
                return
            self._reload_locked(keep_previous=True)

    def _reload_locked(self, *, keep_previous: bool) -> None:
        assert self._directory is not None
        previous = len(self._snapshot.keys) if keep_previous else 0
        try:
            info = os.stat(self._directory)
            keys = load_keys(self._directory)
        except FileNotFoundError:
            self._seen_mtime_ns = None  # look again at the next check
            keys = []
        except OSError as exc:
            self._report(f"signing key directory {self._directory} cannot be read ({exc.strerror})")
            self._seen_mtime_ns = None
            return
        else:
            self._seen_mtime_ns = info.st_mtime_ns
            self._reread_next_check = time.time_ns() - info.st_mtime_ns < _RACY_MTIME_NS
            _warn_if_shared(self._directory, info)
        if not keys and previous:
            self._report(f"signing key directory {self._directory} holds no usable key")
            return
        self._reported = None
        self._snapshot = _Snapshot.of(keys)

    def _report(self, problem: str) -> None:
        """Log a problem once, not at every check while it lasts."""
        if problem != self._reported:
            kept = len(self._snapshot.keys)
            if kept:
                logger.error("%s: still using the %d keys loaded before", problem, kept)
            else:
                logger.error("%s", problem)
            self._reported = problem


# --- The app's ring ---


@functools.cache
def _in_memory_testing_key() -> SigningKey:
    """One key per test process, made on first use: creating it per app would slow the suite."""
    created = datetime.now(UTC)
    return SigningKey(
        kid=_new_kid(created), private_key=Ed25519PrivateKey.generate(), created=created
    )


def keys_directory(app: Flask) -> Path:
    """``JWT_KEYS_DIR``, or ``<instance folder>/jwt-keys`` when it is unset."""
    configured = app.config.get("JWT_KEYS_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(app.instance_path) / DEFAULT_DIRECTORY_NAME


def _serves_requests() -> bool:
    """False in ``flask <command>`` processes other than ``flask run``.

    Those never sign a token, and ``flask keys rotate`` is how production gets its first key, so
    they start without one. A WSGI server (gunicorn) imports the app without the flask CLI.
    """
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return True
    context = click.get_current_context(silent=True)
    return context is not None and context.command.name == "run"


def init_key_ring(app: Flask) -> KeyRing:
    """Load the app's key ring (``key_ring(app)`` returns it). Production without a usable key
    raises ``ConfigError``; development and testing create one."""
    env = app.config[ENV_VAR]
    if env == "testing" and not app.config.get("JWT_KEYS_DIR"):
        ring = KeyRing(None, keys=[_in_memory_testing_key()])
    else:
        directory = keys_directory(app)
        ring = KeyRing(directory)
        if not ring.kids and env in {"development", "testing"}:
            rotate(directory)  # a first run works without setup
            ring.reload()
        if not ring.kids and env == "production" and _serves_requests():
            raise ConfigError(
                f"refusing to start with {ENV_VAR}=production: no usable signing key in "
                f"{directory} (JWT_KEYS_DIR). Create one with `flask keys rotate`."
            )
    app.extensions[EXTENSION_NAME] = ring
    return ring


def key_ring(app: Flask | None = None) -> KeyRing:
    """The key ring of ``app`` (default: the current app)."""
    extensions = (app if app is not None else current_app).extensions
    try:
        return extensions[EXTENSION_NAME]
    except KeyError:
        raise RuntimeError("init_key_ring(app) was not called for this app") from None
