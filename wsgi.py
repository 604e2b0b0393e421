"""WSGI entry point: ``gunicorn wsgi:app`` or ``flask run`` (which finds this file by name)."""

import os
import sys

from app import create_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # A clear one-line reason and a non-zero exit, not a traceback.
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None

# `flask run` resets app.debug from FLASK_DEBUG after importing this file; let the profile decide
# (development: debugger and reloader on) unless FLASK_DEBUG is set explicitly.
os.environ.setdefault("FLASK_DEBUG", "1" if app.debug else "0")
