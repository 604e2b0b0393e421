"""The TOTP second factor's building blocks (app/auth/mfa.py): secrets and URIs, code checks with
drift and replay protection, recovery codes, and the sealing of secrets at rest.

Codes come from pyotp, an independent implementation of RFC 6238, at fixed timestamps.
"""

from __future__ import annotations

import base64
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from app.auth import mfa
from app.config import BaseConfig

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
# Mid-step, so +-15 s never crosses into another step by accident.
NOW = 1_750_000_000 - 1_750_000_000 % 30 + 15
STEP = NOW // 30
SECRET_KEY = "testing-only-insecure-secret-key"
USER_ID = str(uuid.UUID(int=1))
OTHER_USER_ID = str(uuid.UUID(int=2))


def code_at(timestamp: float, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).at(timestamp)


def verify(code: str, *, last_used_step: int | None = None, now: float = NOW) -> int | None:
    return mfa.verify_totp(SECRET, code, last_used_step=last_used_step, now=now)


# --- Secrets and provisioning URIs ---


def test_new_totp_secret_is_160_random_bits_of_base32() -> None:
    secrets = {mfa.new_totp_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert len(base64.b32decode(secret)) * 8 == 160
        # pyotp (what authenticator apps implement) accepts it as is.
        assert len(pyotp.TOTP(secret).now()) == 6


def test_provisioning_uri_carries_issuer_secret_and_parameters() -> None:
    issuer = BaseConfig.MFA_ISSUER
    uri = mfa.provisioning_uri(SECRET, account="ada@example.com", issuer=issuer)

    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert unquote(parts.path) == f"/{issuer}:ada@example.com"
    # Spaces as %20, which every app reads ("+" shows literally in some).
    assert " " not in uri
    assert "+" not in uri
    query = parse_qs(parts.query, strict_parsing=True)
    assert query == {
        "secret": [SECRET],
        "issuer": [issuer],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
    # pyotp's own parser reads it back to an equivalent generator.
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.at(NOW) == code_at(NOW)
    assert parsed.issuer == issuer
    assert parsed.name == "ada@example.com"


def test_provisioning_uri_escapes_the_label() -> None:
    uri = mfa.provisioning_uri(SECRET, account="a+b/c?d@example.com", issuer="Acme & Co")
    parts = urlsplit(uri)
    assert "?" not in parts.query
    assert "/" not in parts.path[1:]
    assert unquote(parts.path) == "/Acme & Co:a+b/c?d@example.com"
    assert parse_qs(parts.query)["issuer"] == ["Acme & Co"]


@pytest.mark.parametrize(
    ("secret", "account", "issuer", "message"),
    [
        (SECRET, "ada@example.com", "Bad:Issuer", "issuer"),  # the label's separator
        (SECRET, "ada@example.com", "", "issuer"),
        (SECRET, "", "Acme", "account"),
        ("not base32!", "ada@example.com", "Acme", "not base32"),
        ("JBSWY3DP", "ada@example.com", "Acme", "shorter than 128 bits"),
    ],
)
def test_provisioning_uri_refuses_bad_input(
    secret: str, account: str, issuer: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mfa.provisioning_uri(secret, account=account, issuer=issuer)


# --- Codes ---


def test_current_code_verifies_and_returns_its_step() -> None:
    assert verify(code_at(NOW)) == STEP
    assert mfa.totp_step(NOW) == STEP


def test_aware_datetime_is_accepted_and_naive_refused() -> None:
    aware = datetime.fromtimestamp(NOW, UTC)
    assert mfa.verify_totp(SECRET, code_at(NOW), last_used_step=None, now=aware) == STEP
    with pytest.raises(ValueError, match="timezone-aware"):
        mfa.verify_totp(SECRET, code_at(NOW), last_used_step=None, now=aware.replace(tzinfo=None))


def test_default_clock_is_now() -> None:
    code = pyotp.TOTP(SECRET).now()
    # The step may turn between pyotp's clock and ours: the window covers it.
    assert mfa.verify_totp(SECRET, code, last_used_step=None) is not None


@pytest.mark.parametrize("drift_steps", [-1, 1])
def test_one_step_of_drift_is_accepted(drift_steps: int) -> None:
    assert verify(code_at(NOW + 30 * drift_steps)) == STEP + drift_steps


@pytest.mark.parametrize("drift_steps", [-2, 2])
def test_two_steps_of_drift_are_refused(drift_steps: int) -> None:
    assert verify(code_at(NOW + 30 * drift_steps)) is None


def test_window_zero_accepts_only_the_current_step() -> None:
    def check(at: float) -> int | None:
        return mfa.verify_totp(SECRET, code_at(at), last_used_step=None, now=NOW, valid_window=0)

    assert check(NOW) == STEP
    assert check(NOW - 30) is None


def test_same_code_is_not_accepted_twice() -> None:
    code = code_at(NOW)
    step = verify(code)
    assert step == STEP
    assert verify(code, last_used_step=step) is None
    # Still refused ten seconds later, within the same step and from the next step's window.
    assert verify(code, last_used_step=step, now=NOW + 10) is None
    assert verify(code, last_used_step=step, now=NOW + 30) is None


def test_older_code_is_refused_after_a_newer_one() -> None:
    newer = verify(code_at(NOW + 30))
    assert newer == STEP + 1
    # The current step's code is inside the window but older than the one used.
    assert verify(code_at(NOW), last_used_step=newer) is None
    # The next step's code still works.
    assert verify(code_at(NOW + 60), last_used_step=newer, now=NOW + 60) == STEP + 2


def test_spaces_are_ignored() -> None:
    code = code_at(NOW)
    assert verify(f"{code[:3]} {code[3:]}") == STEP
    assert verify(f" {code} ") == STEP


def to_digits(code: str, zero: str) -> str:
    """``code`` written with another script's digits, starting at ``zero``."""
    return "".join(chr(ord(zero) + int(digit)) for digit in code)


@pytest.mark.parametrize(
    "zero",
    ["\u0660", "\u06f0", "\uff10", "\u0966", "\U0001d7ce"],
    ids=["arabic-indic", "extended-arabic-indic", "fullwidth", "devanagari", "math-bold"],
)
def test_non_ascii_digits_are_refused(zero: str) -> None:
    code = code_at(NOW)
    lookalike = to_digits(code, zero)
    # What a check with str.isdigit() or int() would accept.
    assert lookalike.isdigit()
    assert int(lookalike) == int(code)
    assert verify(lookalike) is None


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda code: code[:5],
        lambda code: code + "0",
        lambda code: "0" + code,
        lambda code: "",
        lambda code: code[:5] + "a",
        lambda code: code[:3] + "-" + code[3:],
        lambda code: code[:5] + "\u00b2",  # superscript two: isdigit() is True
        lambda code: code + " " * 100,  # long inputs are refused before any work
    ],
    ids=["short", "long", "leading-zero", "empty", "letter", "dash", "superscript", "padded"],
)
def test_malformed_codes_are_refused(make_bad: Callable[[str], str]) -> None:
    assert verify(make_bad(code_at(NOW))) is None


def test_wrong_code_is_refused() -> None:
    code = code_at(NOW)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert verify(wrong) is None
    assert mfa.verify_totp(mfa.new_totp_secret(), code, last_used_step=None, now=NOW) is None


def test_first_steps_after_the_epoch() -> None:
    assert verify(code_at(0), now=0) == 0
    assert verify(code_at(30), now=0) == 1


@pytest.mark.parametrize("now", [-1.0, math.nan, math.inf])
def test_clock_out_of_range_is_refused(now: float) -> None:
    with pytest.raises(ValueError, match="out of range"):
        verify(code_at(NOW), now=now)


@pytest.mark.parametrize("window", [-1, mfa.MAX_VALID_WINDOW + 1])
def test_window_out_of_range_is_refused(window: int) -> None:
    with pytest.raises(ValueError, match="valid_window"):
        mfa.verify_totp(SECRET, code_at(NOW), last_used_step=None, now=NOW, valid_window=window)


# --- Recovery codes ---

RECOVERY_KEY = mfa.derive_key(SECRET_KEY, mfa.PURPOSE_RECOVERY)
RECOVERY_FORMAT = re.compile(r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}")


def test_recovery_codes_are_unique_readable_and_carry_60_bits() -> None:
    codes = mfa.new_recovery_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert RECOVERY_FORMAT.fullmatch(code), code
        assert not set(code) & set("ilou")  # nothing to misread
    symbols = len(codes[0].replace("-", ""))
    assert len(mfa.RECOVERY_ALPHABET) == len(set(mfa.RECOVERY_ALPHABET)) == 32
    assert symbols * math.log2(len(mfa.RECOVERY_ALPHABET)) >= 60
    assert mfa.RECOVERY_CODE_BITS == 60


def test_recovery_codes_use_the_whole_alphabet() -> None:
    # 100 codes draw 1200 symbols: each of the 32 is expected ~37 times; missing one is ~1e-15.
    symbols = "".join(mfa.new_recovery_codes(100)).replace("-", "")
    assert set(symbols) == set(mfa.RECOVERY_ALPHABET)
    assert len(set(mfa.new_recovery_codes(100)) | set(mfa.new_recovery_codes(100))) == 200


@pytest.mark.parametrize("count", [0, -1, mfa.MAX_RECOVERY_CODES + 1])
def test_recovery_code_count_is_bounded(count: int) -> None:
    with pytest.raises(ValueError, match="count"):
        mfa.new_recovery_codes(count)


@pytest.mark.parametrize(
    "typed",
    [
        "7q2m-x9d4-kc0r",
        "7Q2M-X9D4-KC0R",
        "7q2mx9d4kc0r",
        " 7q2m x9d4 kc0r ",
        "7q2m - x9d4 - kc0r",
        "7q2m-x9d4-kcOr",  # letter o typed for zero
    ],
)
def test_recovery_hash_ignores_case_dashes_and_spaces(typed: str) -> None:
    stored = mfa.hash_recovery_code("7q2m-x9d4-kc0r", key=RECOVERY_KEY)
    assert mfa.hash_recovery_code(typed, key=RECOVERY_KEY) == stored


def test_recovery_hash_reads_i_and_l_as_one() -> None:
    stored = mfa.hash_recovery_code("1111-aaaa-bbbb", key=RECOVERY_KEY)
    assert mfa.hash_recovery_code("iIlL-aaaa-bbbb", key=RECOVERY_KEY) == stored


def test_recovery_hash_is_keyed() -> None:
    code = mfa.new_recovery_codes(1)[0]
    other_key = mfa.derive_key("another-secret-key", mfa.PURPOSE_RECOVERY)
    stored = mfa.hash_recovery_code(code, key=RECOVERY_KEY)
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert code.replace("-", "") not in stored
    assert mfa.hash_recovery_code(code, key=other_key) != stored


@pytest.mark.parametrize(
    "not_a_code", ["", "7q2m-x9d4", "7q2m-x9d4-kc0r-0000", "7q2m-x9d4-kc0u", "7q2m_x9d4_kc0r"]
)
def test_hashing_a_malformed_recovery_code_fails(not_a_code: str) -> None:
    with pytest.raises(ValueError, match="not a recovery code"):
        mfa.hash_recovery_code(not_a_code, key=RECOVERY_KEY)


def test_match_returns_the_hash_of_the_code_given() -> None:
    codes = mfa.new_recovery_codes()
    stored = [mfa.hash_recovery_code(code, key=RECOVERY_KEY) for code in codes]
    for index in (0, 4, 9):
        assert (
            mfa.match_recovery_code(codes[index].upper(), stored, key=RECOVERY_KEY)
            == (stored[index])
        )
    # Single use: once the caller deletes the hash, the code no longer matches.
    remaining = [value for value in stored if value != stored[4]]
    assert mfa.match_recovery_code(codes[4], remaining, key=RECOVERY_KEY) is None


def test_match_refuses_unknown_malformed_and_wrongly_keyed_codes() -> None:
    codes = mfa.new_recovery_codes(3)
    stored = [mfa.hash_recovery_code(code, key=RECOVERY_KEY) for code in codes]
    unknown = next(code for code in mfa.new_recovery_codes(5) if code not in codes)
    assert mfa.match_recovery_code(unknown, stored, key=RECOVERY_KEY) is None
    assert mfa.match_recovery_code("not a code", stored, key=RECOVERY_KEY) is None
    assert mfa.match_recovery_code(codes[0] * 10, stored, key=RECOVERY_KEY) is None
    assert mfa.match_recovery_code(codes[0], [], key=RECOVERY_KEY) is None
    other_key = mfa.derive_key(SECRET_KEY, mfa.PURPOSE_TOTP)
    assert mfa.match_recovery_code(codes[0], stored, key=other_key) is None


def test_match_reads_any_iterable_once() -> None:
    codes = mfa.new_recovery_codes(3)
    stored = (mfa.hash_recovery_code(code, key=RECOVERY_KEY) for code in codes)
    assert mfa.match_recovery_code(codes[2], stored, key=RECOVERY_KEY) is not None


# --- Sealing secrets at rest ---

TOTP_KEY = mfa.derive_key(SECRET_KEY, mfa.PURPOSE_TOTP)


def test_seal_and_open_round_trip() -> None:
    secret = mfa.new_totp_secret()
    sealed = mfa.seal_secret(secret, key=TOTP_KEY, associated_data=USER_ID)
    assert sealed.startswith("v1:")
    assert secret not in sealed
    assert mfa.open_secret(sealed, key=TOTP_KEY, associated_data=USER_ID) == secret
    # Associated data as bytes is the same thing as its UTF-8 string.
    assert mfa.open_secret(sealed, key=TOTP_KEY, associated_data=USER_ID.encode()) == secret


def test_each_seal_uses_a_fresh_nonce() -> None:
    first = mfa.seal_secret(SECRET, key=TOTP_KEY, associated_data=USER_ID)
    second = mfa.seal_secret(SECRET, key=TOTP_KEY, associated_data=USER_ID)
    assert first != second
    assert base64.urlsafe_b64decode(first[3:])[:12] != base64.urlsafe_b64decode(second[3:])[:12]


def flip_byte(sealed: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(sealed[3:]))
    raw[index] ^= 0x01
    return "v1:" + base64.urlsafe_b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "index", [0, 11, 12, -17, -1], ids=["nonce", "nonce-end", "body", "body-end", "tag"]
)
def test_tampered_seal_is_refused(index: int) -> None:
    sealed = mfa.seal_secret(SECRET, key=TOTP_KEY, associated_data=USER_ID)
    with pytest.raises(mfa.SealedSecretError, match="failed authentication") as raised:
        mfa.open_secret(flip_byte(sealed, index), key=TOTP_KEY, associated_data=USER_ID)
    assert SECRET not in str(raised.value)


def test_wrong_key_is_refused() -> None:
    sealed = mfa.seal_secret(SECRET, key=TOTP_KEY, associated_data=USER_ID)
    for other_key in (RECOVERY_KEY, mfa.derive_key("another-secret-key", mfa.PURPOSE_TOTP)):
        with pytest.raises(mfa.SealedSecretError, match="failed authentication"):
            mfa.open_secret(sealed, key=other_key, associated_data=USER_ID)


def test_seal_copied_to_another_user_is_refused() -> None:
    sealed = mfa.seal_secret(SECRET, key=TOTP_KEY, associated_data=USER_ID)
    with pytest.raises(mfa.SealedSecretError, match="failed authentication"):
        mfa.open_secret(sealed, key=TOTP_KEY, associated_data=OTHER_USER_ID)


@pytest.mark.parametrize(
    ("sealed", "message"),
    [
        ("", "version"),
        ("v2:AAAA", "version"),
        ("JBSWY3DPEHPK3PXP", "version"),  # a secret stored in clear
        ("v1:not base64!", "base64"),
        ("v1:\u00e9t\u00e9", "base64"),
        ("v1:" + base64.urlsafe_b64encode(b"x" * 27).decode(), "truncated"),
        ("v1:" + "A" * 2000, "not a sealed secret"),
    ],
)
def test_malformed_seal_is_refused(sealed: str, message: str) -> None:
    with pytest.raises(mfa.SealedSecretError, match=message):
        mfa.open_secret(sealed, key=TOTP_KEY, associated_data=USER_ID)


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 31, b"x" * 33, "x" * 32])
def test_keys_must_be_32_bytes(key: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        mfa.seal_secret(SECRET, key=key, associated_data=USER_ID)
    with pytest.raises(ValueError, match="32 bytes"):
        mfa.hash_recovery_code("7q2m-x9d4-kc0r", key=key)


def test_associated_data_is_required() -> None:
    with pytest.raises(ValueError, match="associated_data"):
        mfa.seal_secret(SECRET, key=TOTP_KEY, associated_data="")


def test_derive_key_differs_per_purpose_and_secret() -> None:
    totp = mfa.derive_key(SECRET_KEY, mfa.PURPOSE_TOTP)
    recovery = mfa.derive_key(SECRET_KEY, mfa.PURPOSE_RECOVERY)
    assert len(totp) == len(recovery) == 32
    assert totp != recovery
    assert mfa.derive_key(SECRET_KEY, mfa.PURPOSE_TOTP) == totp  # deterministic
    assert mfa.derive_key(SECRET_KEY + "x", mfa.PURPOSE_TOTP) != totp
    assert SECRET_KEY.encode() not in totp


def test_derive_key_needs_a_secret_and_a_purpose() -> None:
    with pytest.raises(ValueError, match="secret_key"):
        mfa.derive_key("", mfa.PURPOSE_TOTP)
    with pytest.raises(ValueError, match="purpose"):
        mfa.derive_key(SECRET_KEY, "")


def test_enrolment_flow_end_to_end() -> None:
    """What the endpoints will do: enrol, seal, confirm, log in, refuse a replay."""
    secret = mfa.new_totp_secret()
    sealed = mfa.seal_secret(secret, key=TOTP_KEY, associated_data=USER_ID)
    app = pyotp.parse_uri(
        mfa.provisioning_uri(secret, account="ada@example.com", issuer="Task Management API")
    )
    start = datetime.fromtimestamp(NOW, UTC)

    opened = mfa.open_secret(sealed, key=TOTP_KEY, associated_data=USER_ID)
    confirmed = mfa.verify_totp(opened, app.at(start), last_used_step=None, now=start)
    assert confirmed == STEP

    later = start + timedelta(minutes=5)
    login = mfa.verify_totp(opened, app.at(later), last_used_step=confirmed, now=later)
    assert login == STEP + 10
    assert mfa.verify_totp(opened, app.at(later), last_used_step=login, now=later) is None
