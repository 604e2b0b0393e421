"""WSGI entry point: ``gunicorn wsgi:app`` or ``flask run`` (which finds this file by name)."""

import sys

from app import create_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # A clear one-line reason and a non-zero exit, not a traceback.
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
