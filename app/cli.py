"""``flask`` commands of the project."""

from __future__ import annotations

import json

import click
from flask import Flask, current_app

_SECRET_MARKERS = ("SECRET", "PASSWORD", "TOKEN", "KEY")


def register_cli(app: Flask) -> None:
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
