"""The SQL behind a list request, and PostgreSQL's plans for it.

A helper module (and the code behind ``scripts/explain-list``), not a test module. The plans are
those of the statements the app really sends: a request runs with a listener recording every
statement and its parameters, and each is then given to ``EXPLAIN`` as it was.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url

Statement = tuple[str, Any]

# The main list requests: (label, query string).
LIST_REQUESTS = [
    ("default sort (newest first), page 1 of 20", ""),
    ("status filter", "?status=todo"),
    ("tag filter", "?tag=tag-7"),
    ("status and tag filters, sorted by due date", "?status=todo&tag=group-1&sort=due_date"),
]
TAGS, GROUPS = 50, 4  # each task: one of 50 tags (2 % of tasks each), one of 4 groups (25 %)
_STATUSES = "ARRAY['todo','in_progress','blocked','done','cancelled']"
_PRIORITIES = "ARRAY['low','medium','high','urgent']"


@contextmanager
def recorded_statements(engine: Engine) -> Iterator[list[Statement]]:
    """Every statement sent through ``engine`` meanwhile, with its parameters."""
    statements: list[Statement] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def on_tasks(statements: list[Statement]) -> list[Statement]:
    """The statements that read the task tables (not BEGIN, not the workspace lookup)."""
    return [s for s in statements if "FROM tasks" in s[0] or "FROM task_tags" in s[0]]


def seed_postgres(connection: Connection, workspace_id: uuid.UUID, count: int) -> None:
    """``count`` tasks in the workspace, one second apart, in one statement per table: every
    status and priority, half with a due date, each with a tag and a group tag."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    connection.execute(
        text(
            "INSERT INTO tasks (workspace_id, id, title, description, status, priority, "
            "due_date, created_at, updated_at, version) "
            "SELECT :ws, gen_random_uuid(), 'Task ' || n, NULL, "
            f"({_STATUSES})[n % 5 + 1], ({_PRIORITIES})[n % 4 + 1], "
            "CASE WHEN n % 2 = 0 THEN :base + (n % 1000) * interval '1 day' END, "
            ":base + n * interval '1 second', :base + n * interval '1 second', 1 "
            "FROM generate_series(1, :count) AS n"
        ),
        {"ws": workspace_id, "base": base, "count": count},
    )
    connection.execute(
        text(
            "INSERT INTO task_tags (workspace_id, task_id, tag, position) "
            f"SELECT workspace_id, id, 'tag-' || (row_number() OVER () % {TAGS}), 0 "
            "FROM tasks WHERE workspace_id = :ws "
            f"UNION ALL SELECT workspace_id, id, 'group-' || (row_number() OVER () % {GROUPS}), 1 "
            "FROM tasks WHERE workspace_id = :ws"
        ),
        {"ws": workspace_id},
    )


def analyze(engine: Engine) -> None:
    """Fresh statistics and visibility map, as autovacuum would leave them after a while."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE tasks"))
        connection.execute(text("VACUUM ANALYZE task_tags"))


def explain(connection: Connection, statement: str, parameters: Any, options: str = "") -> str:
    prefix = f"EXPLAIN ({options}) " if options else "EXPLAIN "
    rows = connection.exec_driver_sql(prefix + statement, parameters).all()
    return "\n".join(row[0] for row in rows)


def list_plans(
    app: Any, engine: Engine, workspace_id: uuid.UUID, options: str = ""
) -> list[tuple[str, list[tuple[str, str]]]]:
    """For each main list request: its label and, per task-table statement, (SQL, plan)."""
    client = app.test_client()
    found = []
    for label, query in LIST_REQUESTS:
        with recorded_statements(engine) as statements:
            response = client.get(f"/api/v2/workspaces/{workspace_id}/tasks{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        with engine.connect() as connection:
            plans = [
                (statement, explain(connection, statement, parameters, options))
                for statement, parameters in on_tasks(statements)
            ]
        found.append((label, plans))
    return found


# --- scripts/explain-list ----------------------------------------------------------------------


def _shortened(statement: str, limit: int = 600) -> str:
    """The tags statement names every task of the page; its plan shows them all anyway."""
    return statement if len(statement) <= limit else statement[:limit] + " ... (shortened)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Seed tasks into a scratch PostgreSQL database and print EXPLAIN (ANALYZE, "
        "BUFFERS) of the statements behind the main list requests."
    )
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in the workspace")
    parser.add_argument(
        "--others", type=int, default=50_000, help="tasks in another workspace (not listed)"
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL URL allowed to CREATE DATABASE (default: $TEST_DATABASE_URL)",
    )
    parser.add_argument("--output", help="write the report here instead of stdout")
    args = parser.parse_args()

    from flask_migrate import upgrade

    from app import create_app

    admin_url = make_url(args.admin_url)
    name = f"taskapi_explain_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=None)
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin_url.set(database=name).render_as_string(hide_password=False)
        app = create_app({"APP_ENV": "testing", "LOG_LEVEL": "WARNING", "DATABASE_URL": url})
        with app.app_context():
            upgrade()
        client = app.test_client()
        workspace_id = uuid.UUID(client.post("/api/v2/workspaces", json={"name": "big"}).json["id"])
        other_id = uuid.UUID(client.post("/api/v2/workspaces", json={"name": "other"}).json["id"])
        engine = app.extensions["shards"].control
        with engine.begin() as connection:
            seed_postgres(connection, workspace_id, args.tasks)
            seed_postgres(connection, other_id, args.others)
            version = connection.execute(text("SHOW server_version")).scalar()
        analyze(engine)
        lines = [
            f"EXPLAIN (ANALYZE, BUFFERS) of the list queries: PostgreSQL {version}, "
            f"{args.tasks:,} tasks in the listed workspace and {args.others:,} in another one, "
            f"each with 2 tags (one of {TAGS}, one of {GROUPS} groups); VACUUM ANALYZE done. "
            "Made by scripts/explain-list.",
        ]
        for label, plans in list_plans(app, engine, workspace_id, "ANALYZE, BUFFERS"):
            lines += ["", "=" * 100, f"GET .../tasks: {label}", "=" * 100]
            for statement, plan in plans:
                lines += ["", _shortened(statement.strip()), "", plan]
        for disposable in app.extensions["shards"].all_engines().values():
            disposable.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    report = "\n".join(lines) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as output:
            output.write(report)
    else:
        sys.stdout.write(report)


if __name__ == "__main__":
    main()
