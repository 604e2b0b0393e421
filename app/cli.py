"""``flask`` commands of the project."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import Flask, current_app
from flask_migrate import upgrade

from app.api.postman import DEFAULT_BASE_URL, app_spec, postman_collection
from app.auth.accounts import DEMO_EMAIL, DEMO_PASSWORD, seed_demo_user
from app.auth.cli import register_users_cli
from app.auth.keys_cli import register_keys_cli
from app.db import db
from app.tasks import seed_demo_tasks
from app.workspaces.moves import register_move_command

_SECRET_MARKERS = ("SECRET", "PASSWORD", "TOKEN", "KEY")


def register_cli(app: Flask) -> None:
    register_move_command(app)  # flask move-workspace
    register_users_cli(app)  # flask users create-admin
    register_keys_cli(app)  # flask keys rotate|list|prune

    @app.cli.command("db-prepare")
    def db_prepare() -> None:
        """Upgrade every database (control and shards) to the newest revision, then seed the
        demo tasks where SEED_DEMO_DATA is on and the default workspace is empty."""
        upgrade()
        if current_app.config["SEED_DEMO_DATA"]:
            added = seed_demo_tasks()
            if added:
                click.echo(f"Seeded {added} demo tasks into the default workspace.", err=True)
            if seed_demo_user(db.session(), current_app.config):
                click.echo(
                    f"Demo account: {DEMO_EMAIL} / {DEMO_PASSWORD!r} (development only).",
                    err=True,
                )

    @app.cli.command("settings")
    def show_settings() -> None:
        """Print the effective configuration (secrets masked) as JSON."""
        shown = {}
        for name in sorted(current_app.config):
            value = current_app.config[name]
            if any(marker in name for marker in _SECRET_MARKERS) and value:
                value = "***"
            shown[name] = value
        click.echo(json.dumps(shown, indent=2, default=str))

    @app.cli.command("export-postman")
    @click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        help="File to write (default: standard output).",
    )
    @click.option(
        "--base-url",
        default=DEFAULT_BASE_URL,
        show_default=True,
        help="Initial value of the collection's baseUrl variable.",
    )
    def export_postman(output: Path | None, base_url: str) -> None:
        """Write a Postman Collection v2.1 generated from the API spec (/swagger.json)."""
        try:
            collection = postman_collection(app_spec(current_app), base_url)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from exc
        text = json.dumps(collection, indent=2, ensure_ascii=False) + "\n"
        if output is None:
            click.echo(text, nl=False)
            return
        output.write_text(text, encoding="utf-8")
        requests = sum(len(folder["item"]) for folder in collection["item"])
        click.echo(
            f"Wrote {requests} requests in {len(collection['item'])} folders to {output}", err=True
        )
