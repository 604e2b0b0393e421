"""Alembic environment: one chain of revisions, applied to every database of the app.

The control database and every shard have the same schema, so ``flask db upgrade`` (and
``downgrade``) run the revisions on each of them in turn: the control database first, then the
shards by name. A revision that moves data can ask which database it is running on:
``op.get_context().config.attributes["database_role"]`` is ``"control"`` or ``"shard"`` (and
``"control"`` for the control database acting as the only shard, ``main``).

``flask db migrate`` (autogenerate) compares the models with the control database only: the
others are, by construction, at the same revision.
"""

from __future__ import annotations

import logging

from alembic import context
from flask import current_app

config = context.config
logger = logging.getLogger("alembic.env")
target_metadata = current_app.extensions["migrate"].db.metadata


def _databases() -> list[tuple[str, str, object]]:
    """(label, role, engine) for each distinct database: control first, then the shards."""
    registry = current_app.extensions["shards"]
    found = [("control", "control", registry.control)]
    for name, engine in sorted(registry.all_engines().items(), key=lambda item: str(item[0])):
        if name is not None:
            found.append((f"shard {name}", "shard", engine))
    only = config.attributes.get("only_database")  # tests and tools can aim at one database
    return [entry for entry in found if only is None or entry[0] == only]


def _skip_empty_autogenerate(context_, revision, directives) -> None:  # noqa: ANN001
    if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        logger.info("No changes in schema detected.")


def run_migrations_online() -> None:
    autogenerate = getattr(config.cmd_opts, "autogenerate", False)
    configure_args = dict(current_app.extensions["migrate"].configure_args)
    configure_args.setdefault("process_revision_directives", _skip_empty_autogenerate)
    databases = _databases()[:1] if autogenerate else _databases()
    for label, role, engine in databases:
        logger.info("Migrating the %s database", label)
        config.attributes["database_role"] = role
        with engine.connect() as connection:  # type: ignore[attr-defined]
            context.configure(
                connection=connection, target_metadata=target_metadata, **configure_args
            )
            with context.begin_transaction():
                context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported: run them online")
run_migrations_online()
