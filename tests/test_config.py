"""Configuration: profiles, environment overrides, production refusal, .env for local work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from app.config import ConfigError, load_config
from tests.conftest import PRODUCTION_TEST_SECRET, make_app

ROOT = Path(__file__).resolve().parent.parent
# What production needs besides the secret key: only read here, never created.
PRODUCTION_STORAGE = {"DATABASE_URL": "sqlite://", "BACKUP_DIR": "/var/backups/taskapi"}


def test_development_is_the_default_profile() -> None:
    settings = load_config(environ={})
    assert settings["APP_ENV"] == "development"
    assert settings["DEBUG"] is True
    assert settings["LOG_FORMAT"] == "text"


@pytest.mark.parametrize(
    ("env", "debug", "testing", "log_format"),
    [
        ("development", True, False, "text"),
        ("testing", False, True, "text"),
        ("production", False, False, "json"),
    ],
)
def test_one_variable_selects_the_profile(
    env: str, debug: bool, testing: bool, log_format: str
) -> None:
    environ = {"APP_ENV": env, "SECRET_KEY": PRODUCTION_TEST_SECRET, **PRODUCTION_STORAGE}
    settings = load_config(environ=environ)
    assert (settings["APP_ENV"], settings["DEBUG"], settings["TESTING"]) == (env, debug, testing)
    assert settings["LOG_FORMAT"] == log_format


def test_profile_name_is_case_insensitive() -> None:
    assert load_config(environ={"APP_ENV": "Testing"})["APP_ENV"] == "testing"


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ConfigError, match="APP_ENV must be one of"):
        load_config(environ={"APP_ENV": "staging"})


def test_environment_overrides_are_typed() -> None:
    settings = load_config(
        environ={"APP_ENV": "testing", "MAX_CONTENT_LENGTH": "2048", "DEBUG": "yes"}
    )
    assert settings["MAX_CONTENT_LENGTH"] == 2048
    assert settings["DEBUG"] is True


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG must be a boolean"),
        ("MAX_CONTENT_LENGTH", "1MB", "MAX_CONTENT_LENGTH must be an integer"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be"),
    ],
)
def test_bad_environment_values_are_rejected(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ={"APP_ENV": "testing", name: value})


def test_explicit_overrides_beat_the_environment() -> None:
    settings = load_config(
        {"APP_ENV": "testing", "API_TITLE": "From code"},
        environ={"APP_ENV": "production", "API_TITLE": "From env"},
    )
    assert settings["APP_ENV"] == "testing"
    assert settings["API_TITLE"] == "From code"


def test_create_app_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TITLE", "Env title")
    app = create_app({"APP_ENV": "testing"})
    assert app.config["API_TITLE"] == "Env title"
    assert app.test_client().get("/swagger.json").json["info"]["title"] == "Env title"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "changeme"}, "publicly known default"),
        ({"SECRET_KEY": "development-only-insecure-secret-key"}, "publicly known default"),
        ({"SECRET_KEY": "short-but-not-known"}, "shorter than 32"),
        ({"SECRET_KEY": PRODUCTION_TEST_SECRET, "DEBUG": True}, "DEBUG is on"),
        ({"SECRET_KEY": PRODUCTION_TEST_SECRET, "TESTING": True}, "TESTING is on"),
        ({"SECRET_KEY": PRODUCTION_TEST_SECRET, "DATABASE_URL": None}, "DATABASE_URL is not set"),
        ({"SECRET_KEY": PRODUCTION_TEST_SECRET, "BACKUP_DIR": None}, "BACKUP_DIR is not set"),
    ],
)
def test_production_refuses_unsafe_settings(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        create_app({"APP_ENV": "production", **PRODUCTION_STORAGE, **overrides})


def test_production_starts_with_a_strong_secret() -> None:
    app = make_app("production")
    assert app.config["APP_ENV"] == "production"
    assert not app.debug
    assert not app.testing


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"APP_ENV", "SECRET_KEY", "DEBUG"}}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def test_wsgi_entry_point_exits_non_zero_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=_clean_env(APP_ENV="production"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to start with APP_ENV=production: SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_flask_cli_loads_dotenv_for_local_work(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_TITLE=Title from dotenv\nAPP_ENV=testing\n")
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "settings"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["API_TITLE"] == "Title from dotenv"
    assert settings["APP_ENV"] == "testing"
    assert settings["SECRET_KEY"] == "***"  # secrets are never printed


@pytest.mark.parametrize(("env", "debug"), [("development", True), ("testing", False)])
def test_flask_cli_keeps_the_profiles_debug_setting(env: str, debug: bool, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "settings"],
        cwd=tmp_path,
        env={k: v for k, v in _clean_env(APP_ENV=env).items() if k != "FLASK_DEBUG"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["DEBUG"] is debug


def test_production_refuses_flask_debug() -> None:
    environ = {
        "APP_ENV": "production",
        "SECRET_KEY": PRODUCTION_TEST_SECRET,
        **PRODUCTION_STORAGE,
        "FLASK_DEBUG": "1",
    }
    with pytest.raises(ConfigError, match="FLASK_DEBUG is on"):
        load_config(environ=environ)


def test_env_example_documents_every_setting() -> None:
    documented = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line
    }
    settings = set(load_config(environ={"APP_ENV": "testing"}))
    assert settings <= documented, f"undocumented in .env.example: {sorted(settings - documented)}"


def test_settings_command_masks_secrets_in_process() -> None:
    app = create_app({"APP_ENV": "testing", "API_TITLE": "Shown"})
    result = app.test_cli_runner().invoke(args=["settings"])
    assert result.exit_code == 0
    settings = json.loads(result.output)
    assert settings["API_TITLE"] == "Shown"
    assert settings["SECRET_KEY"] == "***"
    assert "testing-only-insecure-secret-key" not in result.output
