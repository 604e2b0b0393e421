"""Users' credentials: email addresses as account names, the password policy, Argon2id hashes.

Pure functions, no Flask: the user service calls them with values from the app's config.

- ``normalise_email``: one canonical spelling per mailbox, so one account per mailbox.
- ``password_problems``: NIST SP 800-63B-4's rules (length, a blocklist, context words, no
  composition rules), as messages for the person choosing the password.
- ``hasher_from_config``, ``hash_password``, ``verify_password``, ``needs_rehash``,
  ``burn_verify_time``: Argon2id through argon2-cffi, with the password normalised (NFKC) and its
  length bounded before any hashing.
"""

from __future__ import annotations

import functools
import gzip
import secrets
import string
import unicodedata
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import argon2
from argon2.exceptions import VerificationError

# --- Email addresses ---------------------------------------------------------------------------
#
# The accepted subset of RFC 5321/5322 (with RFC 6531's non-ASCII local parts):
# - local part: a dot-atom, i.e. ASCII letters, digits and !#$%&'*+-/=?^_`{|}~ or any non-ASCII
#   character that is not a control, format, space or unassigned code point, in runs separated by
#   single dots; no quoted strings ("john doe"@...), no comments, at most 64 bytes (UTF-8);
# - domain: a DNS name of at least two labels, written in Unicode or ASCII, stored as ASCII
#   (IDNA, "xn--" labels), letters/digits/hyphens, no IP literals ([192.0.2.1]), no numeric
#   top-level label, no trailing dot;
# - the whole address at most 254 bytes (RFC 5321's 256-byte path, less the angle brackets).

EMAIL_MAX_OCTETS = 254
LOCAL_PART_MAX_OCTETS = 64
DOMAIN_MAX_OCTETS = 253
DOMAIN_LABEL_MAX_OCTETS = 63
# Anything longer is refused before any Unicode work: it could not fit in 254 bytes anyway.
_EMAIL_INPUT_MAX_CHARS = 1024
_EMAIL_TOO_LONG = f"The email address is too long (at most {EMAIL_MAX_OCTETS} bytes)."

_LOCAL_PART_ASCII = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.")
_DOMAIN_LABEL_CHARS = frozenset(string.ascii_lowercase + string.digits + "-")
# Controls, invisible format characters (zero-width joiners, bidi overrides: look-alike
# addresses), lone surrogates, private-use and unassigned code points, and every kind of space.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


class InvalidEmailError(ValueError):
    """The text is not an email address we accept; the message says why, for the user."""


def normalise_email(raw: str) -> str:
    """The canonical form of an email address: ``local@domain``, lowercased, domain in ASCII.

    Raises ``InvalidEmailError`` for anything outside the accepted subset above.
    """
    if not isinstance(raw, str):
        raise InvalidEmailError("The email address must be a string.")
    if len(raw) > _EMAIL_INPUT_MAX_CHARS:
        raise InvalidEmailError(_EMAIL_TOO_LONG)
    address = unicodedata.normalize("NFC", raw.strip())
    if not address:
        raise InvalidEmailError("The email address is empty.")
    if any(_is_refused_email_char(char) for char in address):
        raise InvalidEmailError(
            "The email address must not contain spaces, control or invisible characters."
        )
    if address.count("@") != 1:
        raise InvalidEmailError("The email address must contain exactly one '@'.")
    local_part, domain = address.split("@")
    email = f"{_normalise_local_part(local_part)}@{_normalise_domain(domain)}"
    if len(email.encode("utf-8")) > EMAIL_MAX_OCTETS:
        raise InvalidEmailError(_EMAIL_TOO_LONG)
    return email


def _is_refused_email_char(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in _REFUSED_CATEGORIES


def _normalise_local_part(local_part: str) -> str:
    if not local_part:
        raise InvalidEmailError("The part before '@' is empty.")
    unexpected = sorted(
        {char for char in local_part if char.isascii() and char not in _LOCAL_PART_ASCII}
    )
    if unexpected:
        raise InvalidEmailError(
            "The part before '@' must not contain "
            + " ".join(unexpected)
            + " (quoted local parts are not accepted)."
        )
    if local_part.startswith(".") or local_part.endswith(".") or ".." in local_part:
        raise InvalidEmailError(
            "The part before '@' must not start or end with a dot, or have two dots in a row."
        )
    # Lowercased, although RFC 5321 lets a mail server treat "Alice" and "alice" as two mailboxes:
    # in practice none does, so two accounts for them would be one person twice (or someone
    # registering a look-alike of another's account). lower(), not casefold(): casefold() maps
    # "ß" to "ss", which can be another mailbox. Normalised again: lower() can un-normalise.
    lowered = unicodedata.normalize("NFC", local_part.lower())
    if len(lowered.encode("utf-8")) > LOCAL_PART_MAX_OCTETS:
        raise InvalidEmailError(
            f"The part before '@' is too long (at most {LOCAL_PART_MAX_OCTETS} bytes)."
        )
    return lowered


def _normalise_domain(domain: str) -> str:
    invalid = InvalidEmailError("The part after '@' is not a valid domain name.")
    if not domain:
        raise InvalidEmailError("The part after '@' is empty.")
    try:
        # Python's "idna" codec is IDNA 2003 (nameprep: lowercases, maps full-width letters and
        # "。" to ASCII). It passes ASCII labels through unchecked, so each label is checked after.
        ascii_domain = domain.lower().encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise invalid from None
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise InvalidEmailError("The domain must have at least two labels, like example.com.")
    for label in labels:
        if not _is_dns_label(label):
            raise invalid
        if label.startswith("xn--") and not _is_valid_a_label(label):
            raise invalid
    if labels[-1].isdigit():
        raise InvalidEmailError("The part after '@' must be a domain name, not an IP address.")
    if len(ascii_domain) > DOMAIN_MAX_OCTETS:
        raise invalid
    return ascii_domain


def _is_dns_label(label: str) -> bool:
    return (
        0 < len(label) <= DOMAIN_LABEL_MAX_OCTETS
        and set(label) <= _DOMAIN_LABEL_CHARS
        and not label.startswith("-")
        and not label.endswith("-")
    )


def _is_valid_a_label(label: str) -> bool:
    """An "xn--" label must decode, and encode back to itself (one spelling per domain)."""
    try:
        return label.encode("ascii").decode("idna").encode("idna").decode("ascii") == label
    except UnicodeError:
        return False


# --- Password policy (NIST SP 800-63B-4, section 3.1.1.2) --------------------------------------

# The hard ceiling on a password we normalise or hash, in code points, whatever the policy says:
# a login request with a megabyte "password" costs no more than a refusal. PASSWORD_MAX_LENGTH
# (the policy's limit at registration) must stay below it.
PASSWORD_INPUT_MAX_CHARS = 1024
# NFKC can shrink text about 3 to 1 at most (Hangul jamo into syllables), so a password 4 times
# longer than the limit is refused before normalising it.
_NFKC_MAX_SHRINK = 4
# Context words shorter than this are only refused as the whole password: "containing 'jo'"
# would refuse too many good passphrases.
_CONTEXT_WORD_MIN_CHARS = 4

COMMON_PASSWORDS_RESOURCE = "data/common-passwords.txt.gz"


class PasswordTooLongError(ValueError):
    """A password longer than PASSWORD_INPUT_MAX_CHARS: never normalised nor hashed."""


def normalise_password(password: str) -> str:
    """NFKC, as 800-63B asks, so the same password typed on another keyboard still matches.

    Used when hashing and when verifying. Callers bound the length first (the functions here do).
    """
    return unicodedata.normalize("NFKC", password)


def password_problems(
    password: str, *, min_length: int, max_length: int, context: Iterable[str] = ()
) -> list[str]:
    """What is wrong with a new password, as messages for its owner; empty when it is fine.

    Length is counted in code points after NFKC. ``context``: words the password must not be or
    contain, such as the account's email address (its part before "@" counts too). No
    composition rules (digits, symbols, cases): 800-63B says they make passwords worse.
    """
    if not 1 <= min_length <= max_length <= PASSWORD_INPUT_MAX_CHARS:
        raise ValueError(
            f"password lengths must satisfy 1 <= min ({min_length}) <= max ({max_length})"
            f" <= {PASSWORD_INPUT_MAX_CHARS}"
        )
    too_long = f"Use at most {max_length} characters."
    if len(password) > max_length * _NFKC_MAX_SHRINK:
        return [too_long]
    if any(unicodedata.category(char) == "Cs" for char in password):
        # A lone surrogate (JSON allows "\ud800") can't be encoded, so it can't be hashed.
        return ["The password contains an invalid character (an unpaired surrogate)."]
    normalised = normalise_password(password)
    problems: list[str] = []
    if len(normalised) < min_length:
        problems.append(f"Use at least {min_length} characters.")
    elif len(normalised) > max_length:
        problems.append(too_long)
    folded = normalised.lower()
    if folded.strip() in common_passwords():
        problems.append("This password is on a list of common or leaked passwords: choose another.")
    if _contains_context_word(folded, context):
        problems.append("The password must not be or contain your email address or its name part.")
    if _is_short_sequence_repeated(normalised, min_length):
        problems.append(
            "The password must not be one short sequence repeated (like 'aaaa...' or 'abcabc...')."
        )
    return problems


def _contains_context_word(folded_password: str, context: Iterable[str]) -> bool:
    for word in _context_words(context):
        if folded_password == word:
            return True
        if len(word) >= _CONTEXT_WORD_MIN_CHARS and word in folded_password:
            return True
    return False


def _context_words(context: Iterable[str]) -> Iterable[str]:
    for item in context:
        word = normalise_password(item[:PASSWORD_INPUT_MAX_CHARS]).lower().strip()
        if word:
            yield word
            local_part, at, _domain = word.rpartition("@")
            if at and local_part:
                yield local_part


def _is_short_sequence_repeated(text: str, min_length: int) -> bool:
    """True for "aaaa...", "abcabc...", "passwordpassword": a unit shorter than the minimum length,
    repeated to reach it. A repetition's strength is its unit's."""
    if not text:
        return False
    # (text + text).find(text, 1) is the length of text's shortest repeating unit, or len(text).
    unit_length = (text + text).find(text, 1)
    return unit_length < len(text) and unit_length < min_length


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped blocklist (app/auth/data/README.md says where from): lowercase, NFKC.

    Read once per process, when first needed.
    """
    data = resources.files("app.auth").joinpath(COMMON_PASSWORDS_RESOURCE).read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").splitlines())


# --- Argon2id hashes ---------------------------------------------------------------------------


def hasher_from_config(config: Mapping[str, Any]) -> argon2.PasswordHasher:
    """The Argon2id hasher for PASSWORD_HASH_TIME_COST, _MEMORY_KIB and _PARALLELISM.

    One per parameter set per process (building one is cheap, but the dummy hash of
    ``burn_verify_time`` is made once per parameter set).
    """
    time_cost = int(config["PASSWORD_HASH_TIME_COST"])
    memory_kib = int(config["PASSWORD_HASH_MEMORY_KIB"])
    parallelism = int(config["PASSWORD_HASH_PARALLELISM"])
    # argon2-cffi only finds bad parameters when it first hashes: say which setting is wrong now.
    if time_cost < 1:
        raise ValueError("PASSWORD_HASH_TIME_COST must be at least 1")
    if not 1 <= parallelism <= 255:
        raise ValueError("PASSWORD_HASH_PARALLELISM must be between 1 and 255")
    if memory_kib < 8 * parallelism:
        raise ValueError("PASSWORD_HASH_MEMORY_KIB must be at least 8 x PASSWORD_HASH_PARALLELISM")
    return _hasher(time_cost, memory_kib, parallelism)


@functools.lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> argon2.PasswordHasher:
    return argon2.PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        type=argon2.Type.ID,
    )


def _bounded_normalised(password: str) -> str | None:
    """The password as hashed, or None when it is too long to be hashed at all."""
    if len(password) > PASSWORD_INPUT_MAX_CHARS:
        return None
    normalised = normalise_password(password)
    return normalised if len(normalised) <= PASSWORD_INPUT_MAX_CHARS else None


def hash_password(hasher: argon2.PasswordHasher, password: str) -> str:
    """The PHC string ("$argon2id$v=19$m=...") to store. Check ``password_problems`` first."""
    prepared = _bounded_normalised(password)
    if prepared is None:
        raise PasswordTooLongError(
            f"A password longer than {PASSWORD_INPUT_MAX_CHARS} characters is never hashed."
        )
    return hasher.hash(prepared)


def verify_password(hasher: argon2.PasswordHasher, stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``. False, never an exception, for a wrong
    password, an over-long one, or a stored hash that is not a valid Argon2 hash."""
    if not isinstance(stored_hash, str) or not isinstance(password, str):
        return False
    prepared = _bounded_normalised(password)
    if prepared is None:
        return False
    try:
        # The hash's own parameters are used, so a hash made before a cost change still verifies
        # (then needs_rehash says to redo it).
        return hasher.verify(stored_hash, prepared)
    except (VerificationError, ValueError):
        # VerificationError: a mismatch, or a hash argon2 can't decode. ValueError:
        # InvalidHashError, or text that can't be encoded (a lone surrogate).
        return False


def needs_rehash(hasher: argon2.PasswordHasher, stored_hash: str) -> bool:
    """Whether a hash that just verified was made with other parameters (or another Argon2 type)
    than ``hasher``'s, and should be replaced by ``hash_password`` with the same password."""
    if not isinstance(stored_hash, str):
        return True
    try:
        return hasher.check_needs_rehash(stored_hash)
    except ValueError:  # not an Argon2 hash at all: it can't be kept as it is
        return True


def burn_verify_time(hasher: argon2.PasswordHasher, password: str) -> None:
    """Spend the time of a real ``verify_password``, for a login with an unknown email.

    Without it a wrong email answers in microseconds and a wrong password in tens of
    milliseconds: anyone could tell which emails have accounts.
    """
    verify_password(hasher, _dummy_hash(_parameters_of(hasher)), password)


_Parameters = tuple[argon2.Type, int, int, int, int, int]


def _parameters_of(hasher: argon2.PasswordHasher) -> _Parameters:
    return (
        hasher.type,
        hasher.time_cost,
        hasher.memory_cost,
        hasher.parallelism,
        hasher.hash_len,
        hasher.salt_len,
    )


@functools.lru_cache(maxsize=8)
def _dummy_hash(parameters: _Parameters) -> str:
    """A hash with exactly these parameters (verifying costs the same), of a random password
    nobody knows, so that it never verifies. Made once per parameter set per process."""
    hash_type, time_cost, memory_cost, parallelism, hash_len, salt_len = parameters
    hasher = argon2.PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_cost,
        parallelism=parallelism,
        hash_len=hash_len,
        salt_len=salt_len,
        type=hash_type,
    )
    return hasher.hash(secrets.token_urlsafe(32))
