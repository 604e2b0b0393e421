"""Databases made by a checkpoint's migrations, kept as text, so later checkpoints can prove that
their migrations upgrade real data of the previous one.

A helper module (and the code behind ``scripts/make-db-fixture``), not a test module. A fixture is
one SQL dump per database (``sqlite3``'s ``iterdump``: plain text, reviewable, a few kB) in
``tests/fixtures/<checkpoint>/``: ``control.sql``, ``shard-a.sql``, ``shard-b.sql``. It is built
by running the checkpoint's migrations on empty SQLite files, then seeding data through the HTTP
API (so every table a feature writes to gets rows, whatever features exist), then dumping.

``load_fixture(checkpoint, folder)`` turns the dump back into database files and returns the
settings of an app on them; tests/test_migrations.py upgrades them to head and checks every row.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
SHARD_NAMES = ("shard-a", "shard-b")
DATABASES = ("control", *SHARD_NAMES)


def _settings(folder: Path) -> dict[str, Any]:
    def url(name: str) -> str:
        return f"sqlite:///{folder / (name + '.db')}"

    return {
        "APP_ENV": "testing",
        "LOG_LEVEL": "WARNING",
        "RATE_LIMITS_ENABLED": False,  # the seeding logs in more often than a person would
        "DATABASE_URL": url("control"),
        "SHARD_URLS": ",".join(f"{name}={url(name)}" for name in SHARD_NAMES),
    }


def load_fixture(checkpoint: str, folder: Path) -> dict[str, Any]:
    """Create ``folder/<database>.db`` from the checkpoint's dumps; the app settings for them."""
    for name in DATABASES:
        script = (FIXTURES_DIR / checkpoint / f"{name}.sql").read_text(encoding="utf-8")
        connection = sqlite3.connect(folder / f"{name}.db")
        try:
            connection.executescript(script)
        finally:
            connection.close()
    return _settings(folder)


def dump(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        return "\n".join(connection.iterdump()) + "\n"
    finally:
        connection.close()


# The account a fixture's data belongs to (chapter 4 on): `flask users create-admin` with these
# makes it on an older fixture, and adopts that fixture's workspaces, as the docs tell operators.
FIXTURE_ADMIN = "admin@fixture.example"
FIXTURE_PASSWORD = "fixture passphrase for upgrade tests"


def sign_in(app: Any) -> Any:
    """A client of FIXTURE_ADMIN (created, or promoted, by the documented CLI step)."""
    cli = app.test_cli_runner().invoke(
        args=["users", "create-admin", "--email", FIXTURE_ADMIN, "--password", FIXTURE_PASSWORD]
    )
    assert cli.exit_code == 0, cli.output
    anonymous = app.test_client()
    tokens = anonymous.post(
        "/api/v2/auth/login", json={"email": FIXTURE_ADMIN, "password": FIXTURE_PASSWORD}
    )
    assert tokens.status_code == 200, tokens.get_data(True)
    anonymous.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {tokens.json['access_token']}"
    return anonymous


def _seed(app: Any) -> None:
    """A bit of everything, through the API: workspaces on both shards, tasks with tags, due
    dates, every status, an edited and a deleted task, a renamed workspace, v1 tasks; and
    (chapter 4) accounts, memberships, API keys, an ended session, a second factor."""
    client = sign_in(app)

    def ok(response: Any, status: int) -> Any:
        assert response.status_code == status, (response.status_code, response.get_data(True))
        return response

    placed: dict[str, list[str]] = {name: [] for name in SHARD_NAMES}
    count = 0
    while min(len(ids) for ids in placed.values()) < 2:
        count += 1
        created = ok(client.post("/api/v2/workspaces", json={"name": f"Workspace {count}"}), 201)
        placed[created.json["shard"]].append(created.json["id"])
    statuses = ["todo", "in_progress", "blocked", "done", "cancelled"]
    for shard, workspace_ids in placed.items():
        for w, workspace_id in enumerate(workspace_ids[:2]):
            tasks = f"/api/v2/workspaces/{workspace_id}/tasks"
            ids = []
            for i in range(5):
                body: dict[str, Any] = {
                    "title": f"{shard} task {i} — ünïcode",
                    "status": statuses[i],
                    "priority": ["low", "medium", "high", "urgent"][i % 4],
                    "tags": [f"tag-{i % 3}", "shared"] if i % 2 == 0 else [],
                }
                if i % 2:
                    body["description"] = f"Described task {i}\nwith two lines"
                    body["due_date"] = f"2027-0{i}-15T09:30:00Z"
                ids.append(ok(client.post(tasks, json=body), 201).json["id"])
            ok(client.patch(f"{tasks}/{ids[0]}", json={"title": "edited", "tags": ["x"]}), 200)
            ok(client.delete(f"{tasks}/{ids[-1]}"), 204)
            if w == 0:
                workspace = f"/api/v2/workspaces/{workspace_id}"
                renamed = {"name": f"Renamed on {shard}"}
                etag = ok(client.get(workspace), 200).headers["ETag"]
                ok(client.patch(workspace, json=renamed, headers={"If-Match": etag}), 200)
    for i in range(3):  # API v1: the default workspace
        ok(client.post("/api/v1/tasks", json={"title": f"v1 task {i}", "tags": ["v1"]}), 201)
    ok(client.post("/api/v2/workspaces", json={"name": "Empty"}), 201)
    _seed_access(app, client, placed[SHARD_NAMES[0]][0], ok)


def _seed_access(app: Any, client: Any, workspace_id: str, ok: Any) -> None:
    """Chapter 4's tables: a member, a viewer, keys (one revoked), sessions (one ended, one
    refreshed), a second factor with recovery codes, OAuth clients (one revoked)."""
    import pyotp

    anonymous = app.test_client()
    members = f"/api/v2/workspaces/{workspace_id}/members"
    for role in ("member", "viewer"):
        email = f"{role}@fixture.example"
        ok(
            anonymous.post(
                "/api/v2/auth/register", json={"email": email, "password": FIXTURE_PASSWORD}
            ),
            201,
        )
        ok(client.post(members, json={"email": email, "role": role}), 201)
    keys = f"/api/v2/workspaces/{workspace_id}/api-keys"
    ok(client.post(keys, json={"name": "read only"}), 201)
    revoked = ok(client.post(keys, json={"name": "write", "scopes": ["read", "write"]}), 201)
    ok(client.delete(f"{keys}/{revoked.json['id']}"), 204)
    clients = f"/api/v2/workspaces/{workspace_id}/oauth-clients"
    app_client = {"name": "Task board", "redirect_uris": ["https://board.example/callback"]}
    ok(client.post(clients, json={**app_client, "scopes": ["read", "write"]}), 201)
    gone = ok(client.post(clients, json={**app_client, "token_endpoint_auth_method": "none"}), 201)
    ok(client.delete(f"{clients}/{gone.json['client_id']}"), 204)
    login = {"email": "member@fixture.example", "password": FIXTURE_PASSWORD}
    first = ok(anonymous.post("/api/v2/auth/login", json=login), 200).json
    ok(anonymous.post("/api/v2/auth/refresh", json={"refresh_token": first["refresh_token"]}), 200)
    second = ok(anonymous.post("/api/v2/auth/login", json=login), 200).json
    logout = {"Authorization": f"Bearer {second['access_token']}"}
    ok(anonymous.post("/api/v2/auth/logout", headers=logout), 204)
    viewer = ok(
        anonymous.post(
            "/api/v2/auth/login",
            json={"email": "viewer@fixture.example", "password": FIXTURE_PASSWORD},
        ),
        200,
    ).json
    headers = {"Authorization": f"Bearer {viewer['access_token']}"}
    secret = ok(anonymous.post("/api/v2/auth/mfa/totp", headers=headers), 201).json["secret"]
    code = pyotp.TOTP(secret).now()
    ok(anonymous.post("/api/v2/auth/mfa/totp/confirm", json={"code": code}, headers=headers), 200)


def build_fixture(checkpoint: str) -> Path:
    """Migrate empty databases to head, seed them, and write the dumps. Returns the folder."""
    from flask_migrate import upgrade

    from app import create_app

    target = FIXTURES_DIR / checkpoint
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="db-fixture-") as tmp:
        folder = Path(tmp)
        app = create_app(_settings(folder))
        try:
            with app.app_context():
                upgrade()
            _seed(app)
        finally:
            for engine in app.extensions["shards"].all_engines().values():
                engine.dispose()
        for name in DATABASES:
            (target / f"{name}.sql").write_text(dump(folder / f"{name}.db"), encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Build tests/fixtures/<checkpoint>/: this checkpoint's migrations plus seed "
        "data, dumped as SQL text (one file per database)."
    )
    parser.add_argument("checkpoint", help="the checkpoint the databases belong to, e.g. ch-03")
    args = parser.parse_args()
    print(build_fixture(args.checkpoint))


if __name__ == "__main__":
    main()
