"""``flask users ...``: accounts from the command line (the first administrator)."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.auth.accounts import create_admin
from app.core.errors import ApiProblem
from app.db import db


def register_users_cli(app: Flask) -> None:
    users = AppGroup("users", help="User accounts.")

    @users.command("create-admin")
    @click.option("--email", required=True, help="The administrator's email.")
    @click.option(
        "--password",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="ADMIN_PASSWORD",
        help="Prompted for when not given (or set ADMIN_PASSWORD); never put it on a command "
        "line others can see.",
    )
    def create_admin_command(email: str, password: str) -> None:
        """Create a platform administrator (or promote an existing account) and make them the
        owner of every workspace that has no owner, e.g. after upgrading a chapter 3 database."""
        try:
            user, adopted = create_admin(db.session(), current_app.config, email, password)
        except ApiProblem as problem:  # a refused email or password: say which, no traceback
            reasons = "; ".join(
                f"{error.get('pointer', '')[2:]} {error['detail']}"
                for error in problem.extensions.get("errors", [])
            )
            raise click.ClickException(f"{problem.detail} {reasons}".strip()) from None
        click.echo(f"Platform administrator {user.email} ({user.id}).")
        click.echo(f"Now the owner of {adopted} workspace(s) that had no owner.")

    app.cli.add_command(users)
