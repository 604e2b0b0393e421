"""Persistence: one schema, many databases.

The *control* database holds the workspace directory (which shard each workspace lives on); each
*shard* database holds the tasks of the workspaces placed on it. Every database has the same
schema, so one chain of migrations upgrades all of them (``flask db-upgrade``), and a workspace can
move to any shard. ``create_app`` wires it all (``init_databases``); importing has no side effects.
"""

from app.db.base import Base, db
from app.db.setup import init_databases
from app.db.shards import shard_session

__all__ = ["Base", "db", "init_databases", "shard_session"]
