"""app/auth/credentials.py: email normalisation, the password policy, Argon2id hashes."""

from __future__ import annotations

import statistics
import time
import unicodedata
from collections.abc import Callable

import argon2
import pytest

from app.auth.credentials import (
    PASSWORD_INPUT_MAX_CHARS,
    InvalidEmailError,
    PasswordTooLongError,
    burn_verify_time,
    common_passwords,
    hash_password,
    hasher_from_config,
    needs_rehash,
    normalise_email,
    normalise_password,
    password_problems,
    verify_password,
)

# --- Email addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@example.com", "alice@example.com"),
        ("  Alice.Smith+Tasks@Example.COM\n", "alice.smith+tasks@example.com"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("user@Bücher.Example", "user@xn--bcher-kva.example"),
        ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
        ("user@ＥＸＡＭＰＬＥ。com", "user@example.com"),  # full-width letters, ideographic dot
        ("ÉLODIE@exemple.fr", "élodie@exemple.fr"),
        ("e\u0301lodie@exemple.fr", "\u00e9lodie@exemple.fr"),  # NFC: one code point
        ("用户@例子.测试", "用户@xn--fsqu00a.xn--0zwm56d"),  # IANA's IDN test domain
        ("a@b.co", "a@b.co"),
    ],
)
def test_normalise_email_gives_one_canonical_form(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


def test_spellings_of_one_mailbox_normalise_alike() -> None:
    spellings = ["Alice@Bücher.example", " alice@BÜCHER.EXAMPLE", "ALICE@xn--bcher-kva.example"]
    assert {normalise_email(spelling) for spelling in spellings} == {"alice@xn--bcher-kva.example"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("alice.example.com", "exactly one '@'"),
        ("alice@home@example.com", "exactly one '@'"),
        ("@example.com", "before '@' is empty"),
        ("alice@", "after '@' is empty"),
        ("alice smith@example.com", "spaces"),
        ("alice@exa mple.com", "spaces"),
        ("alice\t@example.com", "spaces"),
        ("alice\x00@example.com", "control"),
        ("ali\u200bce@example.com", "invisible"),  # zero-width space
        ("alice\u202e@example.com", "invisible"),  # right-to-left override
        ('"alice"@example.com', "quoted"),
        ("alice(work)@example.com", r"must not contain \( \)"),
        (".alice@example.com", "dot"),
        ("alice.@example.com", "dot"),
        ("al..ice@example.com", "dot"),
        ("alice@localhost", "two labels"),
        ("alice@192.0.2.1", "not an IP address"),
        ("alice@[192.0.2.1]", "not a valid domain"),
        ("alice@example.com.", "not a valid domain"),
        ("alice@.example.com", "not a valid domain"),
        ("alice@exa..mple.com", "not a valid domain"),
        ("alice@-example.com", "not a valid domain"),
        ("alice@example-.com", "not a valid domain"),
        ("alice@exa_mple.com", "not a valid domain"),
        ("alice@xn--zz.com", "not a valid domain"),  # "xn--" label that is not valid punycode
        ("alice@exam\ud800ple.com", "invisible"),  # a lone surrogate, as JSON can carry
    ],
)
def test_normalise_email_refuses_bad_forms(raw: str, message: str) -> None:
    with pytest.raises(InvalidEmailError, match=message):
        normalise_email(raw)


def test_invalid_email_error_is_a_value_error_and_non_strings_are_refused() -> None:
    assert issubclass(InvalidEmailError, ValueError)
    with pytest.raises(InvalidEmailError, match="must be a string"):
        normalise_email(None)  # type: ignore[arg-type]


def test_local_part_is_at_most_64_bytes() -> None:
    assert normalise_email("a" * 64 + "@example.com") == "a" * 64 + "@example.com"
    assert normalise_email("é" * 32 + "@example.com") == "é" * 32 + "@example.com"
    with pytest.raises(InvalidEmailError, match="too long"):
        normalise_email("a" * 65 + "@example.com")
    with pytest.raises(InvalidEmailError, match="too long"):
        normalise_email("é" * 33 + "@example.com")  # 33 characters, 66 bytes


def test_whole_address_is_at_most_254_bytes_and_labels_63() -> None:
    domain = "a" * 63 + "." + "b" * 63 + "." + "c" * 61  # 189 bytes
    longest = "l" * 64 + "@" + domain
    assert len(longest) == 254
    assert normalise_email(longest) == longest
    with pytest.raises(InvalidEmailError, match="too long"):
        normalise_email("l" * 64 + "@" + domain + "c")
    with pytest.raises(InvalidEmailError, match="not a valid domain"):
        normalise_email("alice@" + "a" * 64 + ".com")


def test_huge_input_is_refused_before_any_unicode_work() -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidEmailError, match="too long"):
        normalise_email("alice@" + "ü" * 1_000_000 + ".com")  # IDNA-encoding it takes seconds
    assert time.perf_counter() - started < 0.1


# --- Password policy ---------------------------------------------------------------------------


def problems(password: str, *, min_length: int = 15, context: tuple[str, ...] = ()) -> list[str]:
    return password_problems(password, min_length=min_length, max_length=128, context=context)


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "all lowercase and no digits at all",  # no composition rules
        "ça fait longtemps, mon ami",
        "🐴🔋📎 horse battery staple",
        "fifteen chars!!",  # exactly the minimum
        "x" + "y" * 126 + "z",  # exactly the maximum
        "correct horse battery staple" * 2,  # a repeated unit long enough on its own
    ],
)
def test_good_passphrases_have_no_problems(password: str) -> None:
    assert problems(password, context=("alice.smith@example.com",)) == []


def test_too_short() -> None:
    assert problems("fourteen chars") == ["Use at least 15 characters."]
    assert problems("") == ["Use at least 15 characters."]


def test_too_long() -> None:
    assert problems("x" + "y" * 127 + "z") == ["Use at most 128 characters."]


def test_a_megabyte_password_is_refused_without_normalising_it() -> None:
    started = time.perf_counter()
    # NFKC turns each U+FDFA into 18 characters: normalising this takes most of a second.
    assert problems("\ufdfa" * 1_000_000) == ["Use at most 128 characters."]
    assert time.perf_counter() - started < 0.1


def test_length_is_counted_in_code_points_after_nfkc() -> None:
    decomposed = unicodedata.normalize("NFD", "crème brûlée!!!")  # 15 composed, 18 decomposed
    assert len(decomposed) == 18
    assert problems(decomposed) == []
    short = unicodedata.normalize("NFD", "crème brûlée!!")  # 14 once composed
    assert len(short) == 17
    assert problems(short) == ["Use at least 15 characters."]
    ligature = "an o\ufb03ce job!!"  # "ﬃ" is three characters in NFKC: 13 raw, 15 counted
    assert len(ligature) == 13
    assert problems(ligature) == []


@pytest.mark.parametrize(
    ("password", "min_length"),
    [
        ("password123", 8),
        ("PassWord123", 8),  # compared case-insensitively
        ("  iloveyou  ", 8),
        ("ｐａｓｓｗｏｒｄ１２３", 8),  # full-width: the same password after NFKC
        ("Friend Of Emily", 15),
        ("1q2w3e4r5t6y7u8i", 15),
    ],
)
def test_common_passwords_are_refused(password: str, min_length: int) -> None:
    assert problems(password, min_length=min_length) == [
        "This password is on a list of common or leaked passwords: choose another."
    ]


@pytest.mark.parametrize(
    "password",
    [
        "alice.smith@example.com",
        "ALICE.SMITH@EXAMPLE.COM",
        "my name is alice.smith, hi",
        "Alice.Smith forever and ever",
        "ａｌｉｃｅ.ｓｍｉｔｈ on the keyboard",  # full-width, the same after NFKC
    ],
)
def test_passwords_with_the_email_are_refused(password: str) -> None:
    assert problems(password, context=("Alice.Smith@Example.com",)) == [
        "The password must not be or contain your email address or its name part."
    ]


def test_short_context_words_only_refuse_an_equal_password() -> None:
    assert problems("jolly good fellows all", context=("jo@example.com",)) == []
    assert password_problems("jo", min_length=1, max_length=128, context=("jo@example.com",)) == [
        "The password must not be or contain your email address or its name part."
    ]


@pytest.mark.parametrize(
    "password",
    ["a" * 20, "ab" * 10, "🙂" * 15, "passwordpassword", "x1y2z3x1y2z3x1y2z3"],
)
def test_a_short_sequence_repeated_is_refused(password: str) -> None:
    assert problems(password) == [
        "The password must not be one short sequence repeated (like 'aaaa...' or 'abcabc...')."
    ]


def test_several_problems_are_reported_together() -> None:
    assert problems("zqzqzqzq") == [
        "Use at least 15 characters.",
        "The password must not be one short sequence repeated (like 'aaaa...' or 'abcabc...').",
    ]


def test_unpaired_surrogates_are_refused() -> None:
    assert problems("a perfectly fine \ud800 passphrase") == [
        "The password contains an invalid character (an unpaired surrogate)."
    ]


def test_messages_never_quote_the_password() -> None:
    password = "Secret-Passw0rd"
    found = password_problems(password, min_length=20, max_length=128, context=("secret@x.org",))
    assert len(found) == 2
    assert not any(password.lower() in message.lower() for message in found)


@pytest.mark.parametrize(("min_length", "max_length"), [(0, 128), (16, 15), (15, 100_000)])
def test_impossible_length_limits_are_a_programming_error(min_length: int, max_length: int) -> None:
    with pytest.raises(ValueError, match="password lengths"):
        password_problems("whatever it is", min_length=min_length, max_length=max_length)


def test_shipped_list_loads_once_lowercased_and_long_enough() -> None:
    started = time.perf_counter()
    common = common_passwords()
    loaded_in = time.perf_counter() - started
    assert isinstance(common, frozenset)
    assert common_passwords() is common
    assert 5_000 <= len(common) <= 50_000
    assert {"password123", "iloveyou", "qwertyuiop", "1q2w3e4r5t"} <= common
    assert all(len(entry) >= 8 for entry in common)
    assert all(entry == unicodedata.normalize("NFKC", entry).lower().strip() for entry in common)
    assert loaded_in < 1.0  # about 1-2 ms; generous for a loaded machine


# --- Argon2id hashes ---------------------------------------------------------------------------


def hash_config(*, time_cost: int = 1, memory_kib: int = 256, parallelism: int = 1) -> dict:
    return {
        "PASSWORD_HASH_TIME_COST": time_cost,
        "PASSWORD_HASH_MEMORY_KIB": memory_kib,
        "PASSWORD_HASH_PARALLELISM": parallelism,
    }


PASSPHRASE = "correct horse battery staple"


def test_hash_round_trip() -> None:
    hasher = hasher_from_config(hash_config())
    stored = hash_password(hasher, PASSPHRASE)
    assert stored.startswith("$argon2id$v=19$m=256,t=1,p=1$")
    assert PASSPHRASE not in stored
    assert hash_password(hasher, PASSPHRASE) != stored  # a new salt every time
    assert verify_password(hasher, stored, PASSPHRASE) is True
    assert verify_password(hasher, stored, "correct horse battery stapler") is False
    assert verify_password(hasher, stored, PASSPHRASE.upper()) is False


def test_hashing_and_verifying_normalise_alike() -> None:
    hasher = hasher_from_config(hash_config())
    stored = hash_password(hasher, "ｃｒèｍｅ ｂｒûｌéｅ ｆｏｒ ｔｗｏ")  # full-width letters
    assert verify_password(hasher, stored, "crème brûlée for two") is True
    assert verify_password(hasher, stored, unicodedata.normalize("NFD", "crème brûlée for two"))
    assert normalise_password("ｆｏｏ") == "foo"


def test_hasher_from_config_is_built_once_per_parameter_set() -> None:
    assert hasher_from_config(hash_config()) is hasher_from_config(hash_config())
    assert hasher_from_config(hash_config()) is not hasher_from_config(hash_config(time_cost=2))
    hasher = hasher_from_config(hash_config(time_cost=2, memory_kib=1024, parallelism=2))
    assert (hasher.type, hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (
        argon2.Type.ID,
        2,
        1024,
        2,
    )


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        (hash_config(time_cost=0), "PASSWORD_HASH_TIME_COST"),
        (hash_config(parallelism=0), "PASSWORD_HASH_PARALLELISM"),
        (hash_config(memory_kib=16, parallelism=4), "PASSWORD_HASH_MEMORY_KIB"),
    ],
)
def test_bad_hash_settings_are_named(config: dict, setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        hasher_from_config(config)


def test_a_hash_made_with_other_parameters_verifies_and_needs_rehash() -> None:
    old_hasher = hasher_from_config(hash_config(time_cost=1, memory_kib=256))
    new_hasher = hasher_from_config(hash_config(time_cost=2, memory_kib=512))
    old_hash = hash_password(old_hasher, PASSPHRASE)
    assert needs_rehash(old_hasher, old_hash) is False
    assert verify_password(new_hasher, old_hash, PASSPHRASE) is True
    assert needs_rehash(new_hasher, old_hash) is True
    new_hash = hash_password(new_hasher, PASSPHRASE)
    assert needs_rehash(new_hasher, new_hash) is False


def test_an_argon2i_hash_needs_rehash_to_argon2id() -> None:
    hasher = hasher_from_config(hash_config())
    argon2i = argon2.PasswordHasher(time_cost=1, memory_cost=256, parallelism=1, type=argon2.Type.I)
    assert needs_rehash(hasher, argon2i.hash(PASSPHRASE)) is True


def _corrupt_hashes() -> list[object]:
    stored = argon2.PasswordHasher(time_cost=1, memory_cost=256, parallelism=1).hash(PASSPHRASE)
    return [
        "",
        "not a hash",
        stored[:-10],  # truncated
        stored.replace("m=256", "m=zz"),
        stored.replace("$argon2id$", "$argon2xx$"),
        "é" + stored,  # not ASCII
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        None,
    ]


@pytest.mark.parametrize("stored", _corrupt_hashes())
def test_a_corrupt_hash_never_verifies_and_never_raises(stored: str) -> None:
    hasher = hasher_from_config(hash_config())
    assert verify_password(hasher, stored, PASSPHRASE) is False
    assert needs_rehash(hasher, stored) is True


def test_a_password_that_cannot_be_encoded_does_not_verify() -> None:
    hasher = hasher_from_config(hash_config())
    assert verify_password(hasher, hash_password(hasher, PASSPHRASE), "bad \ud800") is False


def test_an_over_long_password_is_never_hashed() -> None:
    hasher = hasher_from_config(hash_config())
    assert hash_password(hasher, "x" * PASSWORD_INPUT_MAX_CHARS).startswith("$argon2id$")
    with pytest.raises(PasswordTooLongError):
        hash_password(hasher, "x" * (PASSWORD_INPUT_MAX_CHARS + 1))
    with pytest.raises(PasswordTooLongError):
        hash_password(hasher, "\ufdfa" * 100)  # 100 code points, 1,800 after NFKC

    # A hash of the megabyte made by argon2 directly: had verify_password hashed the password,
    # it would say True.
    megabyte = "x" * 1_000_000
    stored = argon2.PasswordHasher(time_cost=1, memory_cost=256, parallelism=1).hash(megabyte)
    assert verify_password(hasher, stored, megabyte) is False
    burn_verify_time(hasher, megabyte)  # no exception either


def _median_seconds(
    action: Callable[[], object], other: Callable[[], object]
) -> tuple[float, float]:
    """Medians of both actions' durations, timed alternately so that load hits both alike."""
    durations: tuple[list[float], list[float]] = ([], [])
    for _ in range(9):
        for index, timed in enumerate((action, other)):
            started = time.perf_counter()
            timed()
            durations[index].append(time.perf_counter() - started)
    return statistics.median(durations[0]), statistics.median(durations[1])


def test_an_unknown_user_costs_about_as_much_as_a_wrong_password() -> None:
    # Costly enough (a few ms) that hashing, not Python's overhead, is what gets measured.
    hasher = hasher_from_config(hash_config(memory_kib=16384))
    stored = hash_password(hasher, PASSPHRASE)
    burn_verify_time(hasher, "warm up: makes the dummy hash")

    known, unknown = _median_seconds(
        lambda: verify_password(hasher, stored, "a wrong guess at it"),
        lambda: burn_verify_time(hasher, "a wrong guess at it"),
    )
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_the_dummy_hash_follows_the_hasher_parameters() -> None:
    cheap = hasher_from_config(hash_config())
    costly = hasher_from_config(hash_config(memory_kib=16384))
    burn_verify_time(cheap, "warm up")
    burn_verify_time(costly, "warm up")
    cheap_time, costly_time = _median_seconds(
        lambda: burn_verify_time(cheap, "a wrong guess"),
        lambda: burn_verify_time(costly, "a wrong guess"),
    )
    assert costly_time > 5 * cheap_time, (cheap_time, costly_time)
