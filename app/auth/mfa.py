"""The building blocks of the TOTP second factor (RFC 6238), free of HTTP and of the database.

- A TOTP secret per user, shown once as an ``otpauth://`` URI (a QR code) and stored sealed with
  AES-256-GCM under a key derived from SECRET_KEY.
- Codes: 6 ASCII digits, one step of clock drift either way, compared in constant time; each
  accepted code returns its time step, which the caller stores so that no code (and no older one)
  is ever accepted again.
- Recovery codes: random, shown once, stored as keyed hashes, each usable once.

What the database holds and which endpoint calls what is the caller's business (app/auth).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import quote, urlencode

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# What every authenticator app assumes; the URI still says so explicitly.
TOTP_DIGITS = 6
TOTP_PERIOD = 30  # seconds per time step
TOTP_ALGORITHM = "SHA1"
# RFC 4226 section 4: a shared secret of at least 128 bits, 160 recommended. 32 base32 chars.
TOTP_SECRET_BITS = 160
MAX_VALID_WINDOW = 10
_MAX_TIMESTAMP = 253402300800  # 10000-01-01 UTC; also refuses NaN and infinity

# Purposes for derive_key: one key per use, so a key leaked from one use opens nothing else.
PURPOSE_TOTP = "mfa-totp"
PURPOSE_RECOVERY = "mfa-recovery"

_ASCII_DIGITS = frozenset("0123456789")
# Longest code input worth reading ("123 456" with generous spacing); anything longer is refused
# before any work is done on it.
_MAX_CODE_INPUT = 32

# Recovery codes: Crockford's base32 alphabet in lower case. No i, l, o or u, so a printed code
# reads one way; 32 symbols give exactly 5 bits each.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_GROUPS = 3
RECOVERY_GROUP_LENGTH = 4
RECOVERY_CODE_BITS = RECOVERY_GROUPS * RECOVERY_GROUP_LENGTH * 5  # 60
MAX_RECOVERY_CODES = 100
_RECOVERY_SYMBOLS = frozenset(RECOVERY_ALPHABET)
_RECOVERY_LENGTH = RECOVERY_GROUPS * RECOVERY_GROUP_LENGTH
# What a person may type for a letter the alphabet left out (Crockford's decoding rules).
_RECOVERY_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})
_MAX_RECOVERY_INPUT = 64

SEAL_VERSION = "v1"
_SEAL_PREFIX = SEAL_VERSION + ":"
_NONCE_BYTES = 12  # 96 bits: the size GCM is specified for
_KEY_BYTES = 32  # AES-256
_MAX_SEALED_LENGTH = 1024
_HKDF_INFO_PREFIX = b"task-management-api/"


class SealedSecretError(Exception):
    """A sealed secret did not open: tampered with, sealed under another key or another user's
    associated data, or not a sealed secret at all. A server-side fault, never the caller's: the
    message says which, never what the value was."""


# --- TOTP ---


def new_totp_secret() -> str:
    """A fresh random TOTP secret: 160 bits, base32 without padding (what apps expect)."""
    return base64.b32encode(secrets.token_bytes(TOTP_SECRET_BITS // 8)).decode("ascii")


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans (Google's Key Uri Format).

    ``account`` is the user's email, ``issuer`` the MFA_ISSUER setting. The issuer appears both as
    the label's prefix and as a parameter, as the format recommends; the parameters apps assume by
    default (SHA1, 6 digits, 30 s) are spelled out for the apps that read them.
    """
    if not issuer or ":" in issuer:
        raise ValueError("issuer must be non-empty and must not contain ':'")
    if not account:
        raise ValueError("account must be non-empty")
    _secret_bytes(secret)  # refuse a malformed secret here rather than in the user's app
    label = quote(issuer, safe="") + ":" + quote(account, safe="@")
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": TOTP_ALGORITHM,
            "digits": TOTP_DIGITS,
            "period": TOTP_PERIOD,
        },
        quote_via=quote,  # spaces as %20: some apps show a literal '+'
    )
    return f"otpauth://totp/{label}?{query}"


def totp_step(now: datetime | float | None = None) -> int:
    """The RFC 6238 time step (counter) at ``now``: a Unix time, an aware datetime, or the clock."""
    if now is None:
        timestamp = time.time()
    elif isinstance(now, datetime):
        if now.tzinfo is None:
            # Read as local time (pyotp's rule), a naive UTC value would be hours off and every
            # code refused. Make the caller say which time it means.
            raise ValueError("now must be a timezone-aware datetime")
        timestamp = now.timestamp()
    else:
        timestamp = float(now)
    if not 0 <= timestamp < _MAX_TIMESTAMP:
        raise ValueError("now is out of range")
    return int(timestamp // TOTP_PERIOD)


def verify_totp(
    secret: str,
    code: str,
    *,
    last_used_step: int | None,
    now: datetime | float | None = None,
    valid_window: int = 1,
) -> int | None:
    """The time step ``code`` belongs to, or None if it is not valid now.

    Accepted: exactly 6 ASCII digits (spaces ignored) matching a step within ``valid_window``
    steps of now, and later than ``last_used_step``. The caller stores the returned step as the
    new ``last_used_step``: a code is accepted once, and never after a newer one.
    """
    if not 0 <= valid_window <= MAX_VALID_WINDOW:
        raise ValueError(f"valid_window must be between 0 and {MAX_VALID_WINDOW}")
    if not isinstance(code, str) or len(code) > _MAX_CODE_INPUT:
        return None
    digits = code.replace(" ", "")
    # str.isdigit() also accepts Arabic-Indic, fullwidth and other digits; HOTP is ASCII only.
    if len(digits) != TOTP_DIGITS or not _ASCII_DIGITS.issuperset(digits):
        return None

    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
    current = totp_step(now)
    matched: int | None = None
    # Compare every step of the window, with no early exit, so the time taken does not say which
    # step (if any) matched or whether the code was already used.
    for step in range(current - valid_window, current + valid_window + 1):
        if step < 0:
            continue
        fresh = last_used_step is None or step > last_used_step
        same = hmac.compare_digest(totp.generate_otp(step), digits)
        # The earliest matching step: on the rare collision the caller then stores the lower step
        # and refuses fewer of the user's next codes.
        if same and fresh and matched is None:
            matched = step
    return matched


def _secret_bytes(secret: str) -> bytes:
    try:
        raw = base64.b32decode(secret + "=" * (-len(secret) % 8), casefold=True)
    except (binascii.Error, ValueError):
        raise ValueError("the TOTP secret is not base32") from None
    if len(raw) * 8 < 128:
        raise ValueError("the TOTP secret is shorter than 128 bits")
    return raw


# --- Recovery codes ---


def new_recovery_codes(count: int = 10) -> list[str]:
    """``count`` distinct recovery codes like ``7q2m-x9d4-kc3r``: 60 random bits each."""
    if not 1 <= count <= MAX_RECOVERY_CODES:
        raise ValueError(f"count must be between 1 and {MAX_RECOVERY_CODES}")
    codes: set[str] = set()
    while len(codes) < count:  # a repeat (about 2**-60 per pair) is simply drawn again
        symbols = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.add(_format_recovery(symbols))
    return sorted(codes)


def normalise_recovery_code(code: str) -> str | None:
    """The 12 symbols a typed recovery code stands for, or None if it cannot be one.

    Case, dashes and spaces are ignored; o, i and l read as 0, 1 and 1 (the alphabet has no o, i,
    l, so a person copying a code by hand may type them).
    """
    if not isinstance(code, str) or len(code) > _MAX_RECOVERY_INPUT:
        return None
    symbols = "".join(code.lower().split()).replace("-", "").translate(_RECOVERY_LOOKALIKES)
    if len(symbols) != _RECOVERY_LENGTH or not _RECOVERY_SYMBOLS.issuperset(symbols):
        return None
    return symbols


def hash_recovery_code(code: str, *, key: bytes) -> str:
    """The value to store for a recovery code: HMAC-SHA256 of its normalised form, in hex.

    Why not Argon2 as for passwords: a slow hash protects guessable secrets against offline
    guessing. A recovery code carries 60 random bits; an attacker with the table would still need
    about 2**59 guesses per code, and the key (derived from SECRET_KEY, not in the database) makes
    even that impossible without the server's secret. A fast hash also lets a login check every
    stored code of the user in constant time without spending seconds of CPU.
    """
    symbols = normalise_recovery_code(code)
    if symbols is None:
        raise ValueError("not a recovery code")
    return _recovery_digest(symbols, key)


def match_recovery_code(code: str, hashes: Iterable[str], *, key: bytes) -> str | None:
    """The stored hash ``code`` matches, or None. The caller deletes that hash: single use.

    Every stored hash is compared, with no early exit, so the time taken does not say which.
    """
    symbols = normalise_recovery_code(code)
    if symbols is None:
        return None
    candidate = _recovery_digest(symbols, key)
    matched: str | None = None
    for stored in hashes:
        if hmac.compare_digest(candidate, stored) and matched is None:
            matched = stored
    return matched


def _recovery_digest(symbols: str, key: bytes) -> str:
    _check_key(key)
    return hmac.new(key, symbols.encode("ascii"), hashlib.sha256).hexdigest()


def _format_recovery(symbols: str) -> str:
    size = RECOVERY_GROUP_LENGTH
    return "-".join(symbols[i : i + size] for i in range(0, len(symbols), size))


# --- Keys and sealing ---


def derive_key(secret_key: str, purpose: str) -> bytes:
    """A 256-bit key for one ``purpose`` (PURPOSE_TOTP, PURPOSE_RECOVERY), from SECRET_KEY.

    HKDF-SHA256 with the purpose in ``info``: keys for different purposes are independent, and
    none reveals SECRET_KEY. Changing SECRET_KEY changes every derived key: sealed secrets no
    longer open and recovery codes no longer match.
    """
    if not secret_key:
        raise ValueError("secret_key must be non-empty")
    if not purpose:
        raise ValueError("purpose must be non-empty")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=_KEY_BYTES,
        salt=None,
        info=_HKDF_INFO_PREFIX + purpose.encode("utf-8"),
    )
    return hkdf.derive(secret_key.encode("utf-8"))


def seal_secret(secret: str, *, key: bytes, associated_data: str | bytes) -> str:
    """``secret`` encrypted with AES-256-GCM, as ``v1:<base64url(nonce + ciphertext + tag)>``.

    ``associated_data`` (the user's id) is authenticated, not stored: a sealed value copied to
    another user's row does not open there. The nonce is random (96 bits): safe for far more
    seals than one key will ever make.
    """
    _check_key(key)
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, secret.encode("utf-8"), _aad(associated_data))
    return _SEAL_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def open_secret(sealed: str, *, key: bytes, associated_data: str | bytes) -> str:
    """The secret :func:`seal_secret` sealed. Raises SealedSecretError if it does not open."""
    _check_key(key)
    if not isinstance(sealed, str) or len(sealed) > _MAX_SEALED_LENGTH:
        raise SealedSecretError("not a sealed secret")
    version, separator, payload = sealed.partition(":")
    if not separator or version != SEAL_VERSION:
        raise SealedSecretError("unknown sealed secret version")
    try:
        raw = base64.urlsafe_b64decode(payload.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise SealedSecretError("sealed secret is not valid base64") from None
    if len(raw) < _NONCE_BYTES + 16:  # nonce + GCM tag, even for an empty secret
        raise SealedSecretError("sealed secret is truncated")
    nonce, ciphertext = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, _aad(associated_data))
    except InvalidTag:
        raise SealedSecretError(
            "sealed secret failed authentication (tampered, other key or other owner)"
        ) from None
    return plain.decode("utf-8")


def _aad(associated_data: str | bytes) -> bytes:
    data = associated_data.encode("utf-8") if isinstance(associated_data, str) else associated_data
    if not data:
        # Without it a sealed value would open in any row: refuse to seal or open unbound.
        raise ValueError("associated_data must be non-empty (the owner's id)")
    return data


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
        raise ValueError("key must be 32 bytes (use derive_key)")
