"""``flask keys``: rotate, list and prune the token signing keys (app/auth/keys.py).

They work on the key directory, not on a running process: workers notice the change within
``RELOAD_INTERVAL_SECONDS``. They run under every profile, production included, where
``flask keys rotate`` makes the first key (``flask`` commands start without one; servers don't).
"""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.auth.keys import RELOAD_INTERVAL_SECONDS, keys_directory, load_keys, prune, rotate


def _directory() -> Path:
    if current_app.config["APP_ENV"] == "testing" and not current_app.config.get("JWT_KEYS_DIR"):
        # The testing profile then signs with an in-memory key: files written here would be
        # ignored, and would land in the project's instance folder.
        raise click.ClickException(
            "JWT_KEYS_DIR is not set: the testing profile signs with an in-memory key."
        )
    return keys_directory(current_app)


def register_keys_cli(app: Flask) -> None:
    keys = AppGroup("keys", help="Token signing keys (Ed25519): rotate, list, prune.")

    @keys.command("rotate")
    def rotate_command() -> None:
        """Add a signing key; it signs new tokens from now on, and prints its kid.

        Tokens signed by the older keys still verify until `flask keys prune` deletes them.
        """
        directory = _directory()
        kid = rotate(directory)
        click.echo(kid)
        click.echo(
            f"New signing key in {directory}: running workers sign with it within "
            f"{RELOAD_INTERVAL_SECONDS:g} seconds.",
            err=True,
        )

    @keys.command("list")
    def list_command() -> None:
        """One line per key, oldest first: kid, created (UTC), and whether it signs or verifies."""
        directory = _directory()
        found = load_keys(directory)
        if not found:
            click.echo(f"No signing key in {directory}. Run `flask keys rotate`.", err=True)
            return
        for index, key in enumerate(found):
            role = "signs" if index == len(found) - 1 else "verifies"
            created = key.created.strftime("%Y-%m-%dT%H:%M:%SZ")
            click.echo(f"{key.kid}  {created}  {role}")

    @keys.command("prune")
    @click.option(
        "--keep-seconds",
        type=click.IntRange(min=0),
        default=None,
        help="Keep keys superseded less than this long ago. Default: ACCESS_TOKEN_TTL + "
        "REFRESH_TOKEN_TTL, so every token they signed has expired. 0 deletes every key but the "
        "newest at once (after a leak: rotate first), ending the sessions they signed.",
    )
    def prune_command(keep_seconds: int | None) -> None:
        """Delete the keys no token still valid can have been signed with; print their kids."""
        directory = _directory()
        if keep_seconds is None:
            config = current_app.config
            keep_seconds = int(config["ACCESS_TOKEN_TTL"]) + int(config["REFRESH_TOKEN_TTL"])
        removed = prune(directory, keep_seconds=keep_seconds)
        for kid in removed:
            click.echo(kid)
        click.echo(
            f"Deleted {len(removed)} signing key(s) superseded more than {keep_seconds} seconds "
            f"ago from {directory}.",
            err=True,
        )

    app.cli.add_command(keys)
