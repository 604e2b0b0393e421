"""The migrations: one chain, reversible step by step, ending exactly at the models' schema, on
SQLite and on PostgreSQL, and able to upgrade the databases of every earlier checkpoint.

Nothing here names a revision except 0001's data: each test walks whatever chain
``migrations/versions`` holds, so a new revision is tested by adding it.

Upgrading an earlier checkpoint's data
--------------------------------------
``tests/fixtures/<checkpoint>/`` holds the databases a checkpoint's migrations made, with seed
data, as SQL text (``scripts/make-db-fixture <checkpoint>``; see tests/migration_fixtures.py).
``test_earlier_checkpoint_databases_upgrade_with_every_row`` loads each of them, upgrades it to
this code's head and checks that every row is still there, column for column, and that the API
serves it. ch-04 adds its revisions, then, once its schema is final, runs
``scripts/make-db-fixture ch-04``: tests/fixtures/ch-04/ appears beside ch-03/, and both are
tested from then on (ch-03's data through every revision since, ch-04's through the later ones).
A fixture is never regenerated after its checkpoint is tagged: it stands for databases already
out there. ``test_the_newest_fixture_is_at_head`` fails when a revision was added after the newest
fixture was made: within a chapter, regenerate that chapter's fixture; in a new chapter, add its
own. A revision that transforms data on purpose (renames a column, rewrites values) says so in
``_EXPECTED_CHANGES`` below, with the reason, instead of weakening the check.

PostgreSQL: set ``TEST_DATABASE_URL`` (an admin URL; CI does); each test creates its own scratch
databases and drops them. Without it those variants skip, saying so.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import (
    DateTime,
    Integer,
    String,
    Uuid,
    column,
    create_engine,
    inspect,
    text,
)
from sqlalchemy import table as table_clause
from sqlalchemy.engine import Engine, make_url

from app import create_app
from app.db import db
from app.db.setup import MIGRATIONS_DIRECTORY
from tests.databases import POSTGRES_ADMIN_URL
from tests.migration_fixtures import DATABASES, FIXTURES_DIR, SHARD_NAMES, load_fixture, sign_in

DEFAULT_WORKSPACE_ID = uuid.UUID("01a19b7b-0000-7000-8000-000000000001")
FIXTURE_CHECKPOINTS = sorted(p.name for p in FIXTURES_DIR.iterdir() if p.is_dir())
# (checkpoint, table) -> why its rows may legitimately differ after the upgrade. Empty so far.
_EXPECTED_CHANGES: dict[tuple[str, str], str] = {}


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_DIRECTORY)
    return ScriptDirectory.from_config(config)


def _revisions() -> list[str]:
    """Every revision, base first."""
    return [script.revision for script in reversed(list(_script().walk_revisions()))]


# --- Databases ---------------------------------------------------------------------------------


def _sqlite_settings(folder: Path) -> dict[str, Any]:
    def url(name: str) -> str:
        return f"sqlite:///{folder / (name + '.db')}"

    return {
        "DATABASE_URL": url("control"),
        "SHARD_URLS": ",".join(f"{name}={url(name)}" for name in SHARD_NAMES),
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Settings of an app on empty databases (control + two shards): files, or new PostgreSQL
    databases created for this test and dropped after it."""
    if request.param == "sqlite":
        yield _sqlite_settings(tmp_path)
        return
    if not POSTGRES_ADMIN_URL:
        pytest.skip("TEST_DATABASE_URL is not set: no PostgreSQL to create scratch databases on")
    admin_url = make_url(POSTGRES_ADMIN_URL)
    prefix = f"taskapi_migrations_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    names = {name: f"{prefix}_{name.replace('-', '_')}" for name in DATABASES}
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=None)
    try:
        with admin.connect() as connection:
            for database in names.values():
                connection.execute(text(f'CREATE DATABASE "{database}"'))

        def url(name: str) -> str:
            return admin_url.set(database=names[name]).render_as_string(hide_password=False)

        yield {
            "DATABASE_URL": url("control"),
            "SHARD_URLS": ",".join(f"{name}={url(name)}" for name in SHARD_NAMES),
        }
    finally:
        with admin.connect() as connection:
            for database in names.values():
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def migration_app(empty_settings: dict[str, Any]) -> Iterator[Flask]:
    app = create_app({"APP_ENV": "testing", "LOG_LEVEL": "WARNING", **empty_settings})
    with app.app_context():
        yield app
    for engine in app.extensions["shards"].all_engines().values():
        engine.dispose()


def _engines(app: Flask) -> dict[str, Engine]:
    """Each database of the app, by label: control, then the shards."""
    return {
        "control" if name is None else name: engine
        for name, engine in app.extensions["shards"].all_engines().items()
    }


# --- Schema ------------------------------------------------------------------------------------


def _objects(engine: Engine) -> set[str]:
    """Every table, index, trigger and function a migration could leave behind, by name."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(
                text("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
            )
            return {f"{kind} {name}" for kind, name in rows}
        rows = connection.execute(
            text(
                "SELECT 'table ' || tablename FROM pg_tables WHERE schemaname = 'public' "
                "UNION ALL SELECT 'index ' || indexname FROM pg_indexes "
                "  WHERE schemaname = 'public' "
                "UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger t "
                "  JOIN pg_class c ON c.oid = t.tgrelid "
                "  JOIN pg_namespace n ON n.oid = c.relnamespace "
                "  WHERE n.nspname = 'public' AND NOT t.tgisinternal "
                "UNION ALL SELECT 'function ' || p.proname FROM pg_proc p "
                "  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' "
                "UNION ALL SELECT 'sequence ' || sequencename FROM pg_sequences "
                "  WHERE schemaname = 'public' "
                "UNION ALL SELECT 'type ' || t.typname FROM pg_type t "
                "  JOIN pg_namespace n ON n.oid = t.typnamespace "
                "  WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')"
            )
        )
        return {row[0] for row in rows}


def _schema(engine: Engine) -> dict[str, Any]:
    """What a revision changes, compared by meaning (batch mode rewrites SQLite's DDL text)."""
    inspector = inspect(engine)
    tables: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        tables[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ],
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "foreign_keys": sorted(
                (fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"])
                for fk in inspector.get_foreign_keys(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
        }
    objects = sorted(o for o in _objects(engine) if "alembic_version" not in o)
    return {"tables": tables, "objects": objects}


def _schemas(app: Flask) -> dict[str, Any]:
    return {label: _schema(engine) for label, engine in _engines(app).items()}


def _differences(engine: Engine) -> list[Any]:
    """What autogenerate would write to bring this database to the models: nothing, we hope."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "target_metadata": db.metadata}
        )
        return compare_metadata(context, db.metadata)


def _version(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


# --- Tests -------------------------------------------------------------------------------------


def test_one_chain_with_a_single_head_and_base() -> None:
    script = _script()
    assert len(script.get_heads()) == 1, f"several heads: {script.get_heads()}; merge them"
    assert len(script.get_bases()) == 1, f"several bases: {script.get_bases()}"
    revisions = _revisions()
    assert revisions[0] == "0001"
    for revision in revisions:
        module = script.get_revision(revision).module
        path = Path(module.__file__ or "")
        assert path.name.startswith(f"{revision}_"), f"{path.name} holds revision {revision}"
        assert callable(getattr(module, "downgrade", None)), f"{revision} has no downgrade"


def test_upgrade_from_empty_gives_exactly_the_models_schema(migration_app: Flask) -> None:
    upgrade()
    head = _script().get_current_head()
    for label, engine in _engines(migration_app).items():
        assert _version(engine) == head, label
        assert _differences(engine) == [], f"{label} differs from the models"


def test_each_revision_downgrades_one_step_and_upgrades_again(migration_app: Flask) -> None:
    before = _schemas(migration_app)  # empty
    for revision in _revisions():
        upgrade(revision=revision)
        after = _schemas(migration_app)
        assert after != before, f"revision {revision} changed no schema"
        downgrade(revision="-1")
        assert _schemas(migration_app) == before, f"downgrading {revision} left traces"
        upgrade(revision=revision)
        assert _schemas(migration_app) == after, f"{revision} upgrades differently the 2nd time"
        before = after


def test_downgrade_to_base_leaves_only_the_version_table_and_upgrade_works_again(
    migration_app: Flask,
) -> None:
    upgrade()
    downgrade(revision="base")
    for label, engine in _engines(migration_app).items():
        assert {o for o in _objects(engine) if "alembic_version" not in o} == set(), label
        assert _version(engine) is None, label
    upgrade()
    for label, engine in _engines(migration_app).items():
        assert _differences(engine) == [], f"{label} differs from the models"


def test_the_default_workspace_is_created_on_the_control_database_only(
    migration_app: Flask,
) -> None:
    upgrade(revision="0001")
    engines = _engines(migration_app)
    with engines.pop("control").connect() as connection:
        rows = connection.execute(text("SELECT id, shard, state FROM workspaces")).all()
    assert [(uuid.UUID(str(row.id)), row.shard, row.state) for row in rows] == [
        (DEFAULT_WORKSPACE_ID, SHARD_NAMES[0], "active")
    ]
    assert sorted(engines) == sorted(SHARD_NAMES)
    for label, engine in engines.items():
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM workspaces")).scalar() == 0, label


def test_rows_written_at_the_first_revision_survive_every_later_one(
    migration_app: Flask,
) -> None:
    """On both engines (the fixture test below covers SQLite with far more data)."""
    upgrade(revision="0001")
    engines = _engines(migration_app)
    # Tables as revision 0001 made them; typed, so each engine stores UUIDs its own way.
    tasks = table_clause(
        "tasks",
        *(column(name, Uuid()) for name in ("id", "workspace_id")),
        *(column(name, String()) for name in ("title", "status", "priority")),
        *(column(name, DateTime(timezone=True)) for name in ("created_at", "updated_at")),
        column("version", Integer()),
    )
    tags = table_clause(
        "task_tags",
        *(column(name, Uuid()) for name in ("task_id", "workspace_id")),
        column("tag", String()),
        column("position", Integer()),
    )
    task_id, at = uuid.uuid4(), datetime(2026, 11, 26, 10, tzinfo=UTC)
    if engines["shard-a"].dialect.name == "sqlite":
        at = at.replace(tzinfo=None)
    with engines["shard-a"].begin() as connection:
        connection.execute(
            tasks.insert().values(
                id=task_id,
                workspace_id=DEFAULT_WORKSPACE_ID,
                title="kept",
                status="todo",
                priority="high",
                created_at=at,
                updated_at=at,
                version=3,
            )
        )
        connection.execute(
            tags.insert().values(
                task_id=task_id, workspace_id=DEFAULT_WORKSPACE_ID, tag="kept", position=0
            )
        )
    before = {
        (label, table): _rows_of(engines[label], table)
        for label, table in [
            ("control", "workspaces"),
            ("shard-a", "tasks"),
            ("shard-a", "task_tags"),
        ]
    }
    upgrade()
    for (label, table), (columns, rows) in before.items():
        assert _rows_of(engines[label], table, columns)[1] == rows, f"{label}.{table}"


# --- Earlier checkpoints' databases ------------------------------------------------------------


def _rows_of(
    engine: Engine, table: str, columns: list[str] | None = None
) -> tuple[list[str], Counter[tuple[Any, ...]]]:
    """The columns and the rows (a multiset: order does not matter) of a table."""
    with engine.connect() as connection:
        if columns is None:
            columns = [c["name"] for c in inspect(connection).get_columns(table)]
        names = ", ".join(f'"{c}"' for c in columns)
        rows = connection.execute(text(f'SELECT {names} FROM "{table}"')).all()
    return columns, Counter(tuple(row) for row in rows)


def _fixture_rows(path: Path) -> dict[str, tuple[list[str], Counter]]:
    connection = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "AND name != 'alembic_version'"
            )
        ]
        found = {}
        for table in tables:
            cursor = connection.execute(f'SELECT * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            found[table] = (columns, Counter(cursor.fetchall()))
        return found
    finally:
        connection.close()


@pytest.mark.parametrize("checkpoint", FIXTURE_CHECKPOINTS)
def test_earlier_checkpoint_databases_upgrade_with_every_row(
    checkpoint: str, tmp_path: Path
) -> None:
    settings = load_fixture(checkpoint, tmp_path)
    before = {name: _fixture_rows(tmp_path / f"{name}.db") for name in DATABASES}
    assert sum(len(rows) for tables in before.values() for _, rows in tables.values()) > 20

    app = create_app(settings)
    try:
        with app.app_context():
            upgrade()
        head = _script().get_current_head()
        for name in DATABASES:
            connection = sqlite3.connect(tmp_path / f"{name}.db")
            try:
                assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
                    (head,)
                ]
                for table, (columns, rows) in before[name].items():
                    if (checkpoint, table) in _EXPECTED_CHANGES:
                        continue
                    names = ", ".join(f'"{c}"' for c in columns)
                    after = Counter(connection.execute(f'SELECT {names} FROM "{table}"').fetchall())
                    assert after == rows, f"{checkpoint} {name}.{table}: rows changed or lost"
            finally:
                connection.close()

        # And the API serves the upgraded data: every workspace, every task, with its tags, to
        # the administrator the documented step (flask users create-admin) makes the owner.
        client = sign_in(app)
        listed = client.get("/api/v2/workspaces?per_page=100")
        assert listed.status_code == 200
        workspaces = {w["id"]: w for w in listed.json["items"]}
        _, workspace_rows = before["control"]["workspaces"]
        assert len(workspaces) == len(workspace_rows) == listed.json["total"]
        for workspace in workspaces.values():
            columns, task_rows = before[workspace["shard"]]["tasks"]
            index = columns.index("workspace_id")
            stored = sum(
                count
                for row, count in task_rows.items()
                if str(uuid.UUID(row[index])) == workspace["id"]
            )
            tasks = client.get(f"/api/v2/workspaces/{workspace['id']}/tasks?per_page=100")
            assert tasks.status_code == 200, tasks.get_data(as_text=True)
            assert tasks.json["total"] == stored, workspace
    finally:
        for engine in app.extensions["shards"].all_engines().values():
            engine.dispose()


def test_the_newest_fixture_is_at_head_with_the_models_schema(tmp_path: Path) -> None:
    """Made before a revision was added (or edited): its chapter must (re)make one."""
    newest = FIXTURE_CHECKPOINTS[-1]
    hint = (
        f"tests/fixtures/{newest} is not what the migrations make now: during {newest}, rerun "
        f"scripts/make-db-fixture {newest}; in a new chapter, scripts/make-db-fixture ch-NN"
    )
    app = create_app({"LOG_LEVEL": "WARNING", **load_fixture(newest, tmp_path)})
    try:
        head = _script().get_current_head()
        for label, engine in _engines(app).items():
            assert _version(engine) == head, hint
            with app.app_context():
                assert _differences(engine) == [], f"{label}: {hint}"
    finally:
        for engine in app.extensions["shards"].all_engines().values():
            engine.dispose()
