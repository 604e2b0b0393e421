"""The backup API and workspace import (platform administrators only) and workspace export (the
workspace's owners), end to end on the configured databases. Unless a test says otherwise the
client is a platform administrator's, who owns the workspaces it creates.

Run on SQLite by default and on PostgreSQL with TEST_DATABASE_URL: the restore tests then go
through pg_dump and pg_restore against real servers.
"""

from __future__ import annotations

import base64
import fcntl
import gzip
import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, event, func, select, text, update

from app.audit.models import AuditEventRow
from app.backups import backup_service, engines
from app.backups.service import COPY_ATTEMPTS, Backup
from app.config import ConfigError, load_config
from app.tasks.models import TaskRow, TaskTagRow
from app.workspaces import moves
from app.workspaces.models import DEFAULT_WORKSPACE_ID, WorkspaceRow
from app.workspaces.moves import move_workspace, shard_tables
from tests.auth import TestUser as User
from tests.auth import add_user, renew_session  # aliased: pytest collects Test* names
from tests.conftest import PRODUCTION_TEST_SECRET, make_app

BACKUPS = "/api/v2/admin/backups"
IMPORT = "/api/v2/admin/workspaces/import"
WORKSPACES = "/api/v2/workspaces"
GZIP = {"Content-Type": "application/gzip"}
REALM = 'Bearer realm="task-management-api"'


def add_platform_admin(app: Flask, email: str = "root@example.com") -> User:
    """A platform administrator (``flask users create-admin``), member of no workspace."""
    return add_user(app, email, platform_admin=True)


def admin_client(app: Flask) -> FlaskClient:
    """A client acting as a new platform administrator: the admin surface is theirs."""
    return app.test_client(token=add_platform_admin(app).token)


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app("testing", BACKUP_DIR=str(tmp_path / "backups"))


@pytest.fixture
def platform_admin(app: Flask) -> User:
    return add_platform_admin(app)


@pytest.fixture
def client(app: Flask, platform_admin: User) -> FlaskClient:
    """The platform administrator's client. The workspaces it creates are its own (their
    owner), so the same client reads, changes and exports them."""
    return app.test_client(token=platform_admin.token)


def workspace_with_tasks(client: FlaskClient, name: str = "w", count: int = 2) -> dict[str, Any]:
    workspace = client.post(WORKSPACES, json={"name": name}).json
    for index in range(count):
        created = client.post(
            f"{WORKSPACES}/{workspace['id']}/tasks",
            json={
                "title": f"{name} task {index}",
                "description": "line one\nline two",
                "tags": ["b", "a"],
                "due_date": "2026-12-01T10:00:00Z",
                "priority": "high",
            },
        )
        assert created.status_code == 201
    return workspace


def all_rows(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in every database: what 'data equals the backup' compares."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with app.app_context():
        for name, engine in app.extensions["shards"].all_engines().items():
            with engine.connect() as connection:
                for table in ("workspaces", "tasks", "task_tags", "memberships"):
                    rows = connection.execute(text(f"SELECT * FROM {table}")).all()
                    found[f"{name}/{table}"] = sorted(tuple(map(str, row)) for row in rows)
    return found


def create_backup(client: FlaskClient) -> dict[str, Any]:
    response = client.post(BACKUPS)
    assert response.status_code == 201, response.json
    return response.json


def change_everything(client: FlaskClient, workspace: dict[str, Any]) -> None:
    tasks = client.get(f"{WORKSPACES}/{workspace['id']}/tasks").json["items"]
    url = f"{WORKSPACES}/{workspace['id']}/tasks"
    assert client.delete(f"{url}/{tasks[0]['id']}").status_code == 204
    assert client.patch(f"{url}/{tasks[1]['id']}", json={"title": "changed"}).status_code == 200
    assert client.post(url, json={"title": "added"}).status_code == 201
    workspace_with_tasks(client, "another", 1)


# --- the platform admin gate (tests/test_admin.py has every method and spelling) ---------------


ADMIN_OPERATIONS = [
    ("get", BACKUPS),
    ("post", BACKUPS),
    ("get", f"{BACKUPS}/{uuid.uuid4()}"),
    ("delete", f"{BACKUPS}/{uuid.uuid4()}"),
    ("get", f"{BACKUPS}/{uuid.uuid4()}/download"),
    ("post", f"{BACKUPS}/{uuid.uuid4()}/restore"),
    ("post", IMPORT),
]


@pytest.mark.parametrize("env", ["testing", "production"])
def test_to_anyone_but_a_platform_admin_the_admin_endpoints_do_not_exist(
    env: str, tmp_path: Path
) -> None:
    app = make_app(env, BACKUP_DIR=str(tmp_path))
    not_platform_admins = {
        "the default workspace's owner": app.extensions["test_owner"],
        "a workspace admin": add_user(app, "ws-admin@example.com", role="admin"),
        "a member of nothing": add_user(app, "nobody@example.com"),
    }
    client = app.test_client(token="")
    archive = export(app.test_client(), str(DEFAULT_WORKSPACE_ID))  # the owner may export
    before = all_rows(app)
    for who, user in not_platform_admins.items():
        for method, url in ADMIN_OPERATIONS:
            headers = {**user.headers, **GZIP}  # an import's body, for the import
            response = client.open(
                url + "?unknown=1", method=method.upper(), headers=headers, data=archive
            )
            assert response.status_code == 404, (who, method, url)
            # Exactly what an unknown URL answers: nothing tells the admin surface is there.
            unknown = client.open("/api/v2/nothing-here", method=method.upper())
            assert response.json["type"] == unknown.json["type"] == "about:blank"
            assert response.json["title"] == unknown.json["title"]
            assert response.json["detail"] == unknown.json["detail"]
    assert not list(tmp_path.iterdir()), "nothing was written"
    assert all_rows(app) == before, "nothing was imported"


@pytest.mark.parametrize(("method", "url"), ADMIN_OPERATIONS)
def test_a_missing_or_wrong_token_is_a_401_with_a_bearer_challenge(
    app: Flask, platform_admin: User, method: str, url: str
) -> None:
    token = platform_admin.token
    attempts = {
        None: REALM,
        f"Basic {token}": REALM,
        "Bearer": REALM,
        f"Bearer {token}x": f'{REALM}, error="invalid_token"',
        f"Bearer {token[:-1]}": f'{REALM}, error="invalid_token"',
        f"Bearer {token[:40]}.{token[40:]}": f'{REALM}, error="invalid_token"',
        "Bearer é-non-ascii": f'{REALM}, error="invalid_token"',
    }
    anonymous = app.test_client(token="")
    for header, challenge in attempts.items():
        headers = {} if header is None else {"Authorization": header}
        response = anonymous.open(url + "?unknown=1", method=method.upper(), headers=headers)
        assert response.status_code == 401, header
        found = response.headers["WWW-Authenticate"]
        assert found == challenge or found.startswith(f"{challenge}, error_description=")
        assert token[:-1] not in found  # the token is never echoed back
        slug = "invalid-token" if "invalid_token" in challenge else "authentication-required"
        assert response.json["type"] == f"/problems/{slug}"


def test_a_platform_admin_opens_the_admin_surface(
    client: FlaskClient, platform_admin: User
) -> None:
    assert client.get(BACKUPS).status_code == 200
    lower_case_scheme = {"Authorization": f"bearer {platform_admin.token}"}
    assert client.get(BACKUPS, headers=lower_case_scheme).status_code == 200
    assert client.get(BACKUPS + "?unknown=1").status_code == 400


def production(**settings: Any) -> dict[str, Any]:
    base = {"APP_ENV": "production", "SECRET_KEY": PRODUCTION_TEST_SECRET, "DATABASE_URL": "x"}
    return load_config({**base, **settings}, environ={})


def test_production_needs_a_backup_dir_and_no_admin_token_is_read() -> None:
    with pytest.raises(ConfigError, match="BACKUP_DIR is not set"):
        production()
    assert production(BACKUP_DIR="/var/backups/taskapi")["BACKUP_DIR"] == "/var/backups/taskapi"
    # Outside production the default directory (instance/backups) is fine for local work.
    assert load_config({"APP_ENV": "testing"}, environ={})["BACKUP_DIR"] is None
    # Chapter 3's shared token is gone: an environment that still sets it changes nothing.
    old = {"APP_ENV": "testing", "ADMIN_TOKEN": "admin-token-for-tests-0123456789abcdef"}
    assert "ADMIN_TOKEN" not in load_config(environ=old)
    with pytest.raises(ConfigError, match="BACKUP_KEEP must be at least 1"):
        load_config({"APP_ENV": "testing"}, environ={"BACKUP_KEEP": "0"})


def test_the_spec_offers_the_bearer_token_to_swagger_ui(client: FlaskClient) -> None:
    spec = client.get("/swagger.json").json
    scheme = spec["securityDefinitions"]["bearer"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert spec["security"] == [{"bearer": []}]  # every operation, unless it says otherwise
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/v2/admin/") and not path.endswith("/export"):
            continue
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert operation.get("security", spec["security"]) == [{"bearer": []}], path
            expected = {"401", "403", "404"} if path.endswith("/export") else {"401", "404"}
            assert expected <= set(operation["responses"]), (method, path)


# --- backups -------------------------------------------------------------------------------


def test_create_list_get_download_delete(app: Flask, client: FlaskClient) -> None:
    workspace_with_tasks(client)
    created = client.post(BACKUPS)
    assert created.status_code == 201
    backup = created.json
    assert created.headers["Location"] == f"{BACKUPS}/{backup['id']}"
    engine = app.extensions["shards"].control.dialect.name
    assert backup["engine"] == engine
    assert backup["reason"] == "requested"
    assert {d["key"] for d in backup["databases"]} == {"control", "shard:shard-a", "shard:shard-b"}
    assert backup["shards"] == ["shard-a", "shard-b"]
    assert backup["alembic_revision"]

    assert client.get(BACKUPS).json == {"items": [backup]}
    assert client.get(f"{BACKUPS}/{backup['id']}").json == backup

    with client.get(f"{BACKUPS}/{backup['id']}/download") as download:
        download.get_data()  # a streamed file: read it, then close the response
    assert download.status_code == 200
    assert download.content_type == "application/x-tar"
    assert int(download.headers["Content-Length"]) == backup["size"] == len(download.data)
    digest = hashlib.sha256(download.data).digest()
    assert digest.hex() == backup["sha256"]
    assert download.headers["ETag"] == f'"{backup["sha256"]}"'
    assert download.headers["Repr-Digest"] == f"sha-256=:{base64.b64encode(digest).decode()}:"
    assert download.headers["Cache-Control"] == "no-store"
    with tarfile.open(fileobj=io.BytesIO(download.data)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        for entry in manifest["databases"]:
            data = tar.extractfile(entry["file"]).read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert names[0] == "manifest.json"
    assert manifest["format"] == "taskapi-backup"
    assert manifest["format_version"] == 1

    directory = Path(app.config["BACKUP_DIR"])
    assert oct((directory / f"{backup['id']}.tar").stat().st_mode & 0o777) == "0o600"

    assert client.delete(f"{BACKUPS}/{backup['id']}").status_code == 204
    for method, suffix in [("get", ""), ("delete", ""), ("get", "/download"), ("post", "/restore")]:
        response = client.open(f"{BACKUPS}/{backup['id']}{suffix}", method=method)
        assert response.status_code == 404
        assert response.json["type"] == "/problems/backup-not-found"
    assert client.get(BACKUPS).json == {"items": []}
    assert sorted(p.name for p in directory.iterdir()) == [".lock"]


def test_a_malformed_backup_id_is_a_404(client: FlaskClient) -> None:
    for url in (f"{BACKUPS}/nope", f"{BACKUPS}/..%2F..%2Fetc/download"):
        assert client.get(url).status_code == 404


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    app = make_app("testing", BACKUP_DIR=str(tmp_path), BACKUP_KEEP=2)
    client = admin_client(app)
    ids = [create_backup(client)["id"] for _ in range(3)]
    listed = [item["id"] for item in client.get(BACKUPS).json["items"]]
    assert listed == [ids[2], ids[1]]
    assert not (tmp_path / f"{ids[0]}.tar").exists()
    assert not (tmp_path / f"{ids[0]}.json").exists()


def test_a_busy_backup_directory_answers_409(app: Flask, client: FlaskClient) -> None:
    backup = create_backup(client)
    with (Path(app.config["BACKUP_DIR"]) / ".lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        for method, url in [
            ("post", BACKUPS),
            ("delete", f"{BACKUPS}/{backup['id']}"),
            ("post", f"{BACKUPS}/{backup['id']}/restore"),
        ]:
            response = client.open(url, method=method)
            assert response.status_code == 409
            assert response.json["type"] == "/problems/backup-busy"
            assert response.headers["Retry-After"] == "30"
    assert client.delete(f"{BACKUPS}/{backup['id']}").status_code == 204


def test_restore_brings_back_exactly_the_backed_up_data(app: Flask, client: FlaskClient) -> None:
    workspace = workspace_with_tasks(client, count=3)
    before = all_rows(app)
    backup = create_backup(client)
    change_everything(client, workspace)
    changed = all_rows(app)
    assert changed != before

    restored = client.post(f"{BACKUPS}/{backup['id']}/restore")
    renew_session(client)  # a restore ends every session
    assert restored.status_code == 200, restored.json
    assert restored.json["restored"] == backup
    assert all_rows(app) == before
    # The API serves the restored data at once (no stale pooled connection or cache).
    tasks = client.get(f"{WORKSPACES}/{workspace['id']}/tasks").json
    assert [t["title"] for t in tasks["items"]] == ["w task 2", "w task 1", "w task 0"]

    # The safety backup holds the data as it was just before: restoring it undoes the restore.
    safety = restored.json["safety_backup"]
    assert safety["reason"] == "pre-restore"
    assert client.post(f"{BACKUPS}/{safety['id']}/restore").status_code == 200
    renew_session(client)  # a restore ends every session
    assert all_rows(app) == changed


def test_a_restore_keeps_ended_sessions_ended(app: Flask, client: FlaskClient) -> None:
    """Restoring rewinds the data, not the sign-outs: a token logged out (say, because it
    leaked) after the backup was taken must not work again once the backup is restored."""
    leaked = add_user(app, "leaked@example.com", role="member")
    backup = create_backup(client)
    holder = app.test_client(token=leaked.token)
    assert holder.get(WORKSPACES).status_code == 200
    assert holder.post("/api/v2/auth/logout").status_code == 204
    assert holder.get(WORKSPACES).status_code == 401

    assert client.post(f"{BACKUPS}/{backup['id']}/restore").status_code == 200
    renew_session(client)  # a restore ends every session
    response = holder.get(WORKSPACES)
    assert response.status_code == 401, "a logged-out token works again after the restore"
    assert response.json["type"] == "/problems/invalid-token"


def _rewrite(
    app: Flask,
    backup_id: str,
    *,
    manifest: Any = None,
    files: dict[str, bytes] | None = None,
    extra: dict[str, bytes] | None = None,
) -> None:
    """Rebuild a stored archive with changes, and record its new checksum: an archive damaged
    or forged so that only the inner checks can catch it."""
    directory = Path(app.config["BACKUP_DIR"])
    archive = directory / f"{backup_id}.tar"
    with tarfile.open(archive) as tar:
        contents = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    current = json.loads(contents["manifest.json"])
    contents["manifest.json"] = json.dumps(manifest(current) if manifest else current).encode()
    contents.update(files or {})
    contents.update(extra or {})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(buffer.getvalue())
    sidecar = directory / f"{backup_id}.json"
    recorded = json.loads(sidecar.read_text())
    recorded["size"] = len(buffer.getvalue())
    recorded["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    sidecar.write_text(json.dumps(recorded))


def _flip_byte(app: Flask, backup_id: str) -> None:
    archive = Path(app.config["BACKUP_DIR"]) / f"{backup_id}.tar"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))


def _truncate(app: Flask, backup_id: str) -> None:
    archive = Path(app.config["BACKUP_DIR"]) / f"{backup_id}.tar"
    archive.write_bytes(archive.read_bytes()[:-5000])


def _first_file(manifest: dict[str, Any]) -> str:
    return manifest["databases"][1]["file"]


DAMAGE = {
    "a flipped byte": lambda app, b: _flip_byte(app, b),
    "truncated": lambda app, b: _truncate(app, b),
    "truncated inside, checksum recomputed": lambda app, b: _rewrite(
        app, b, files={_shard_file(app, b): _shard_bytes(app, b)[:-3000]}
    ),
    "a database file that is not one, checksums recomputed": lambda app, b: _rewrite(
        app,
        b,
        manifest=lambda m: _with_file(m, b"not a database" * 100),
        files={_shard_file(app, b): b"not a database" * 100},
    ),
    "an unknown format version": lambda app, b: _rewrite(
        app, b, manifest=lambda m: {**m, "format_version": 2}
    ),
    "an unexpected member": lambda app, b: _rewrite(app, b, extra={"../../evil.sqlite3": b"x"}),
    "a manifest that is not JSON": lambda app, b: _rewrite(
        app, b, files={"manifest.json": b"{not json"}
    ),
}


def _manifest_of(app: Flask, backup_id: str) -> dict[str, Any]:
    with tarfile.open(Path(app.config["BACKUP_DIR"]) / f"{backup_id}.tar") as tar:
        return json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]


def _shard_file(app: Flask, backup_id: str) -> str:
    return _first_file(_manifest_of(app, backup_id))


def _shard_bytes(app: Flask, backup_id: str) -> bytes:
    with tarfile.open(Path(app.config["BACKUP_DIR"]) / f"{backup_id}.tar") as tar:
        return tar.extractfile(_shard_file(app, backup_id)).read()  # type: ignore[union-attr]


def _with_file(manifest: dict[str, Any], data: bytes) -> dict[str, Any]:
    entry = manifest["databases"][1]
    entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    return manifest


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_backup_is_refused_and_nothing_changes(
    app: Flask, client: FlaskClient, damage: str
) -> None:
    workspace = workspace_with_tasks(client)
    backup = create_backup(client)
    change_everything(client, workspace)
    live = all_rows(app)
    DAMAGE[damage](app, backup["id"])

    response = client.post(f"{BACKUPS}/{backup['id']}/restore")
    renew_session(client)  # a restore ends every session
    assert response.status_code == 422, response.json
    assert response.json["type"] == "/problems/backup-damaged"
    assert "Nothing was changed" in response.json["detail"]
    assert all_rows(app) == live
    assert len(client.get(BACKUPS).json["items"]) == 1, "no safety backup either"
    assert not [p for p in Path(app.config["BACKUP_DIR"]).iterdir() if p.name.startswith(".r")]


INCOMPATIBLE = {
    "another schema revision": lambda m: {
        **m,
        "databases": [{**d, "alembic_revision": "9999"} for d in m["databases"]],
    },
    "another shard set": lambda m: {**m, "shards": ["shard-a", "shard-c"]},
    "a database missing": lambda m: {**m, "databases": m["databases"][:2]},
    "another engine": lambda m: {
        **m,
        "databases": [
            {**d, "engine": "postgresql" if d["engine"] == "sqlite" else "sqlite"}
            for d in m["databases"]
        ],
    },
}


@pytest.mark.parametrize("change", list(INCOMPATIBLE))
def test_a_backup_for_another_deployment_is_a_409(
    app: Flask, client: FlaskClient, change: str
) -> None:
    backup = create_backup(client)
    workspace_with_tasks(client)
    live = all_rows(app)
    manifest = INCOMPATIBLE[change](_manifest_of(app, backup["id"]))
    kept = {d["file"] for d in manifest["databases"]}
    _rewrite(app, backup["id"], manifest=lambda _m: manifest)
    if change == "a database missing":  # the archive must match its manifest, or it is damaged
        directory = Path(app.config["BACKUP_DIR"])
        with tarfile.open(directory / f"{backup['id']}.tar") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.name in kept}  # type: ignore[union-attr]
        members["manifest.json"] = json.dumps(manifest).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        (directory / f"{backup['id']}.tar").write_bytes(buffer.getvalue())
        sidecar = directory / f"{backup['id']}.json"
        recorded = json.loads(sidecar.read_text())
        recorded.update(
            size=len(buffer.getvalue()), sha256=hashlib.sha256(buffer.getvalue()).hexdigest()
        )
        sidecar.write_text(json.dumps(recorded))

    response = client.post(f"{BACKUPS}/{backup['id']}/restore")
    renew_session(client)  # a restore ends every session
    assert response.status_code == 409, response.json
    assert response.json["type"] == "/problems/backup-incompatible"
    assert all_rows(app) == live


def test_damaged_metadata_hides_the_backup(app: Flask, client: FlaskClient) -> None:
    backup = create_backup(client)
    (Path(app.config["BACKUP_DIR"]) / f"{backup['id']}.json").write_text("{broken")
    assert client.get(BACKUPS).json == {"items": []}
    assert client.get(f"{BACKUPS}/{backup['id']}").status_code == 404


def test_admin_actions_are_audited_with_the_acting_user(
    app: Flask, client: FlaskClient, platform_admin: User
) -> None:
    actor = f"user:{platform_admin.id}"
    workspace = workspace_with_tasks(client)
    backup = create_backup(client)
    assert client.delete(f"{BACKUPS}/{create_backup(client)['id']}").status_code == 204
    archive = export(client, workspace["id"])
    imported = client.post(IMPORT, data=archive, headers=GZIP).json
    with app.app_context(), app.extensions["shards"].control.connect() as connection:
        events = connection.execute(
            text("SELECT action, actor, entity_id FROM audit_events ORDER BY id")
        ).all()
    admin_events = [
        (a, who, e) for a, who, e in events if not a.startswith(("task.", "workspace.c"))
    ]
    assert [(a, who) for a, who, _ in admin_events] == [
        ("backup.created", actor),
        ("backup.created", actor),
        ("backup.deleted", actor),
        ("workspace.exported", actor),
        ("workspace.imported", actor),
    ]
    assert admin_events[0][2] == backup["id"]
    assert admin_events[-1][2] == imported["workspace"]["id"]
    assert client.post(f"{BACKUPS}/{backup['id']}/restore").status_code == 200
    renew_session(client)  # a restore ends every session
    with app.app_context(), app.extensions["shards"].control.connect() as connection:
        last = connection.execute(
            text("SELECT action, actor, entity_id FROM audit_events ORDER BY id DESC LIMIT 1")
        ).one()
    assert tuple(last) == ("backup.restored", actor, backup["id"])


def test_the_service_runs_without_a_request(app: Flask) -> None:
    """What a chapter 6 job will do: build the service in an app context and call it."""
    with app.app_context():
        service = backup_service()
        created = service.create()
        assert service.list() == [created]
        assert service.restore(created.id).restored == created


# --- backups and workspaces moving or being deleted -------------------------------------------


def other_shard(shard: str) -> str:
    return "shard-b" if shard == "shard-a" else "shard-a"


def entry_of(app: Flask, workspace_id: str) -> tuple[str, str, int]:
    """The directory entry's (shard, state, version)."""
    with app.app_context(), app.extensions["shards"].control.connect() as connection:
        row = connection.execute(
            select(WorkspaceRow.shard, WorkspaceRow.state, WorkspaceRow.version).where(
                WorkspaceRow.id == uuid.UUID(workspace_id)
            )
        ).one()
    return row.shard, row.state, row.version


def rows_per_shard(app: Flask, workspace_id: str) -> dict[str, int]:
    """The workspace's rows in every shard table (tasks, tags, audit events), per shard."""
    found = {}
    with app.app_context():
        for name, engine in app.extensions["shards"].engines.items():
            with engine.connect() as connection:
                found[name] = sum(
                    connection.scalar(
                        select(func.count())
                        .select_from(table)
                        .where(table.c.workspace_id == uuid.UUID(workspace_id))
                    )
                    for table in shard_tables()
                )
    return found


def last_event(app: Flask) -> tuple[str, dict[str, Any]]:
    with app.app_context(), app.extensions["shards"].control.connect() as connection:
        row = connection.execute(
            select(AuditEventRow.action, AuditEventRow.changes)
            .where(AuditEventRow.workspace_id.is_(None))
            .order_by(AuditEventRow.sequence.desc())
            .limit(1)
        ).one()
    return row.action, row.changes


def assert_serves_it_again(
    client: FlaskClient, workspace_id: str, shard: str, titles: list[str]
) -> None:
    workspace = client.get(f"{WORKSPACES}/{workspace_id}").json
    assert (workspace["shard"], workspace["state"]) == (shard, "active")
    assert sorted(t["title"] for t in tasks_of(client, workspace_id)) == titles
    added = client.post(f"{WORKSPACES}/{workspace_id}/tasks", json={"title": "after restore"})
    assert added.status_code == 201, added.json  # not 503 "moving" forever


# When during a move the backup copies the databases, and where the restored directory places it.
MID_MOVE = {
    "after the flip": "source",  # directory: source, moving; the target empty
    "after the copy, before the switch": "source",  # and a complete copy on the target
    "after the switch, before the cleanup": "target",  # directory: target; rows on both
}
MOVE_STEPS = {"after the flip": "flip", "after the switch, before the cleanup": "switch"}


@pytest.mark.parametrize("moment", list(MID_MOVE))
def test_a_backup_taken_mid_move_restores_the_workspace_active_where_its_data_is(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    workspace = workspace_with_tasks(client, "moving", 3)
    source = workspace["shard"]
    target = other_shard(source)
    titles = sorted(t["title"] for t in tasks_of(client, workspace["id"]))
    taken: list[Backup] = []
    switch = moves._set_entry

    def set_entry(*args: Any, **kwargs: Any) -> bool:
        if moment.startswith("after the copy") and kwargs["to"] == (target, "moving"):
            taken.append(backup_service(app).create())
        return switch(*args, **kwargs)

    def progress(event: moves.MoveEvent) -> None:
        if event.step == MOVE_STEPS.get(moment):
            taken.append(backup_service(app).create())

    monkeypatch.setattr(moves, "_set_entry", set_entry)
    with app.app_context():
        move_workspace(
            uuid.UUID(workspace["id"]),
            target,
            progress=progress,
            registry=app.extensions["shards"],
        )
    monkeypatch.undo()
    assert len(taken) == 1
    assert entry_of(app, workspace["id"])[:2] == (target, "active")
    first = tasks_of(client, workspace["id"])[0]["id"]
    assert client.delete(f"{WORKSPACES}/{workspace['id']}/tasks/{first}").status_code == 204

    restored = client.post(f"{BACKUPS}/{taken[0].id}/restore")
    renew_session(client)  # a restore ends every session
    assert restored.status_code == 200, restored.json
    home = source if MID_MOVE[moment] == "source" else target
    assert entry_of(app, workspace["id"])[:2] == (home, "active")
    assert_serves_it_again(client, workspace["id"], home, titles)
    # Whatever of it the other shard's copy held (a target copy, source leftovers) is gone.
    assert rows_per_shard(app, workspace["id"])[other_shard(home)] == 0
    action, changes = last_event(app)
    assert action == "backup.restored"
    assert changes["moves_called_off"]["after"] == [workspace["id"]]


@pytest.mark.parametrize("tasks_removed", [False, True], ids=["marked", "tasks removed"])
def test_a_backup_taken_mid_delete_restores_the_workspace_active(
    app: Flask, client: FlaskClient, tasks_removed: bool
) -> None:
    """As a delete that fails part way leaves it: active, with what its shard still held."""
    workspace = workspace_with_tasks(client, "deleting", 2)
    titles = sorted(t["title"] for t in tasks_of(client, workspace["id"]))
    workspace_id = uuid.UUID(workspace["id"])
    registry = app.extensions["shards"]
    with app.app_context():
        with registry.control.begin() as connection:
            connection.execute(
                update(WorkspaceRow).where(WorkspaceRow.id == workspace_id).values(state="deleting")
            )
        if tasks_removed:  # the delete's first step done, on the shard
            with registry.engine(workspace["shard"]).begin() as connection:
                connection.execute(
                    delete(TaskTagRow).where(TaskTagRow.workspace_id == workspace_id)
                )
                connection.execute(delete(TaskRow).where(TaskRow.workspace_id == workspace_id))
    backup = create_backup(client)
    version = entry_of(app, workspace["id"])[2]

    restored = client.post(f"{BACKUPS}/{backup['id']}/restore")
    renew_session(client)  # a restore ends every session
    assert restored.status_code == 200, restored.json
    shard, state, new_version = entry_of(app, workspace["id"])
    assert state == "active"
    assert new_version > version  # its state changed: a new ETag
    assert_serves_it_again(client, workspace["id"], shard, [] if tasks_removed else titles)
    action, changes = last_event(app)
    assert action == "backup.restored"
    assert changes["deletes_called_off"]["after"] == [workspace["id"]]
    assert client.delete(f"{WORKSPACES}/{workspace['id']}").status_code == 204  # can finish


# On SQLite a read of the control database left open (the authentication and admin checks' own
# BEGIN) would hold a shared lock while the backup copies: every other writer there (a move, a
# login) would wait, then fail with "database is locked". The admin resource ends that read.


def moves_must_not_be_locked_out(request: pytest.FixtureRequest, app: Flask) -> None:
    """Make a lock wait fail in 0.2 s instead of the configured 10, so a held lock shows."""
    control = app.extensions["shards"].control
    if control.dialect.name != "sqlite":
        return

    @event.listens_for(control, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=200")

    control.dispose()  # pooled connections have the long timeout


@pytest.mark.parametrize("via", ["request", "job"])
def test_a_move_while_the_databases_are_copied_makes_the_backup_copy_again(
    request: pytest.FixtureRequest,
    app: Flask,
    client: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
    via: str,
) -> None:
    """The directory is copied first: a move switching before its shard is copied would leave
    the restored directory naming a shard whose copy no longer holds the workspace. Through the
    API, and as a chapter 6 job will call the service (no request)."""
    if via == "request":
        moves_must_not_be_locked_out(request, app)
    workspace = workspace_with_tasks(client, "moved", 3)
    titles = sorted(t["title"] for t in tasks_of(client, workspace["id"]))
    registry = app.extensions["shards"]
    dump = engines.dump
    moved: list[str] = []

    def dump_then_move(engine: Any, destination: Path) -> None:
        dump(engine, destination)
        if engine is registry.control and not moved:  # once, just after the directory's copy
            move_workspace(
                uuid.UUID(workspace["id"]), other_shard(workspace["shard"]), registry=registry
            )
            moved.append(workspace["id"])

    monkeypatch.setattr(engines, "dump", dump_then_move)
    if via == "request":
        backup_id = create_backup(client)["id"]
    else:
        with app.app_context():
            backup_id = str(backup_service().create().id)
    monkeypatch.undo()
    assert moved
    for task in tasks_of(client, workspace["id"]):
        client.delete(f"{WORKSPACES}/{workspace['id']}/tasks/{task['id']}")

    assert client.post(f"{BACKUPS}/{backup_id}/restore").status_code == 200
    renew_session(client)  # a restore ends every session
    assert_serves_it_again(client, workspace["id"], other_shard(workspace["shard"]), titles)


def test_a_backup_refuses_when_workspaces_keep_moving(
    request: pytest.FixtureRequest,
    app: Flask,
    client: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moves_must_not_be_locked_out(request, app)
    workspace = workspace_with_tasks(client, "restless", 1)
    registry = app.extensions["shards"]
    dump = engines.dump
    attempts: list[str] = []

    def dump_then_move(engine: Any, destination: Path) -> None:
        dump(engine, destination)
        if engine is registry.control:
            shard = entry_of(app, workspace["id"])[0]
            move_workspace(uuid.UUID(workspace["id"]), other_shard(shard), registry=registry)
            attempts.append(shard)

    monkeypatch.setattr(engines, "dump", dump_then_move)
    response = client.post(BACKUPS)
    assert response.status_code == 409, response.json
    assert response.json["type"] == "/problems/backup-busy"
    assert "moved between shards" in response.json["detail"]
    assert response.headers["Retry-After"] == "30"
    assert len(attempts) == COPY_ATTEMPTS
    assert client.get(BACKUPS).json == {"items": []}
    assert sorted(p.name for p in Path(app.config["BACKUP_DIR"]).iterdir()) == [".lock"]


# --- workspace export and import ------------------------------------------------------------


def export(client: FlaskClient, workspace_id: str) -> bytes:
    with client.get(f"{WORKSPACES}/{workspace_id}/export") as response:
        response.get_data()  # a streamed file: read it, then close the response
    assert response.status_code == 200
    assert response.content_type == "application/gzip"
    assert int(response.headers["Content-Length"]) == len(response.data)
    digest = base64.b64encode(hashlib.sha256(response.data).digest()).decode()
    assert response.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    return response.data


def tasks_of(client: FlaskClient, workspace_id: str) -> list[dict[str, Any]]:
    return client.get(f"{WORKSPACES}/{workspace_id}/tasks?per_page=100").json["items"]


def test_export_then_import_makes_a_new_workspace_with_the_same_tasks(
    app: Flask, client: FlaskClient
) -> None:
    source = workspace_with_tasks(client, "source", 3)
    other = workspace_with_tasks(client, "other", 2)  # must not leak into the export
    archive = export(client, source["id"])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert tar.getnames() == ["manifest.json", "tasks.jsonl"]
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        lines = tar.extractfile("tasks.jsonl").read()  # type: ignore[union-attr]
    assert manifest["format"] == "taskapi-workspace-export"
    assert manifest["workspace"]["id"] == source["id"]
    assert manifest["files"]["tasks.jsonl"]["sha256"] == hashlib.sha256(lines).hexdigest()
    assert len(lines.splitlines()) == 3

    first = client.post(IMPORT, data=archive, headers=GZIP)
    assert first.status_code == 201, first.json
    second = client.post(IMPORT + "?name=Second copy", data=archive, headers=GZIP)
    assert second.status_code == 201
    assert first.json["tasks"] == 3
    assert first.json["source_workspace_id"] == source["id"]
    assert first.json["workspace"]["name"] == "source"
    assert second.json["workspace"]["name"] == "Second copy"
    new_id = first.json["workspace"]["id"]
    assert first.headers["Location"] == f"{WORKSPACES}/{new_id}"
    assert client.get(first.headers["Location"]).status_code == 200

    def without_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in item.items() if k != "id"} for item in items]

    original = tasks_of(client, source["id"])
    for copy in (first, second):
        imported = tasks_of(client, copy.json["workspace"]["id"])
        assert without_ids(imported) == without_ids(original)
        assert not {t["id"] for t in imported} & {t["id"] for t in original}
    assert len(tasks_of(client, other["id"])) == 2

    # The rows sit in the shard the directory names for the new workspace, and only there.
    with app.app_context():
        shard = first.json["workspace"]["shard"]
        for name, engine in app.extensions["shards"].engines.items():
            with engine.connect() as connection:
                count = connection.scalar(
                    text("SELECT count(*) FROM tasks WHERE workspace_id = :w"),
                    {"w": uuid.UUID(new_id).hex if engine.dialect.name == "sqlite" else new_id},
                )
            assert count == (3 if name == shard else 0)


def test_import_accepts_a_multipart_upload(client: FlaskClient) -> None:
    archive = export(client, workspace_with_tasks(client)["id"])
    response = client.post(
        IMPORT,
        data={"archive": (io.BytesIO(archive), "export.tar.gz")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.json
    missing = client.post(IMPORT, data={"other": "x"}, content_type="multipart/form-data")
    assert missing.status_code == 400


def test_export_of_an_unknown_workspace_is_a_404(client: FlaskClient) -> None:
    response = client.get(f"{WORKSPACES}/{uuid.uuid4()}/export")
    assert response.status_code == 404
    assert response.json["type"] == "/problems/workspace-not-found"


def _archive(manifest: Any, lines: bytes, *, extra: dict[str, bytes] | None = None) -> bytes:
    members = {
        "manifest.json": json.dumps(manifest).encode(),
        "tasks.jsonl": lines,
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb") as compressed,
        tarfile.open(fileobj=compressed, mode="w") as tar,
    ):
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _valid_parts(client: FlaskClient) -> tuple[dict[str, Any], bytes]:
    archive = export(client, workspace_with_tasks(client)["id"])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        lines = tar.extractfile("tasks.jsonl").read()  # type: ignore[union-attr]
    return manifest, lines


def _resigned(manifest: dict[str, Any], lines: bytes) -> bytes:
    files = {"size": len(lines), "sha256": hashlib.sha256(lines).hexdigest()}
    files["lines"] = len(lines.splitlines())
    return _archive({**manifest, "files": {"tasks.jsonl": files}}, lines)


def _bad_line(lines: bytes, **changes: Any) -> bytes:
    first, *rest = lines.splitlines()
    return b"\n".join([json.dumps({**json.loads(first), **changes}).encode(), *rest]) + b"\n"


BAD_ARCHIVES = {
    "not gzip": lambda m, lines, whole: b"plain text",
    "empty": lambda m, lines, whole: b"",
    "truncated": lambda m, lines, whole: whole[: len(whole) // 2],
    "last bytes cut (gzip trailer)": lambda m, lines, whole: whole[:-4],
    "a flipped byte": lambda m, lines, whole: whole[:40] + bytes([whole[40] ^ 0xFF]) + whole[41:],
    "lines changed, checksum not": lambda m, lines, whole: _archive(m, lines.replace(b"w", b"v")),
    "unknown format version": lambda m, lines, whole: _archive({**m, "format_version": 9}, lines),
    "another format": lambda m, lines, whole: _archive({**m, "format": "zip"}, lines),
    "an extra member": lambda m, lines, whole: _archive(m, lines, extra={"../x": b"1"}),
    "an invalid task": lambda m, lines, whole: _resigned(m, _bad_line(lines, status="nope")),
    "a task with an unknown field": lambda m, lines, whole: _resigned(m, _bad_line(lines, x=1)),
    "an invalid created_at": lambda m, lines, whole: _resigned(
        m, _bad_line(lines, created_at="yesterday")
    ),
    "a line that is not JSON": lambda m, lines, whole: _resigned(m, lines + b"{oops\n"),
    "a line nested too deeply": lambda m, lines, whole: _resigned(
        m, lines + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    ),
    "a lone surrogate in a title": lambda m, lines, whole: _resigned(
        m, _bad_line(lines, title="bad \ud800")
    ),
    "a bad workspace name": lambda m, lines, whole: _resigned(
        {**m, "workspace": {**m["workspace"], "name": ""}}, lines
    ),
    "a manifest missing its files": lambda m, lines, whole: _archive(
        {k: v for k, v in m.items() if k != "files"}, lines
    ),
}


@pytest.mark.parametrize("bad", list(BAD_ARCHIVES))
def test_a_bad_archive_imports_nothing(app: Flask, client: FlaskClient, bad: str) -> None:
    manifest, lines = _valid_parts(client)
    whole = _archive(manifest, lines)
    assert client.post(IMPORT, data=whole, headers=GZIP).status_code == 201
    before = all_rows(app)
    response = client.post(IMPORT, data=BAD_ARCHIVES[bad](manifest, lines, whole), headers=GZIP)
    assert response.status_code == 422, response.json
    assert response.json["type"] in {
        "/problems/workspace-archive-invalid",
        "/problems/validation-error",
    }
    assert all_rows(app) == before


def test_an_invalid_task_is_pointed_at(client: FlaskClient) -> None:
    manifest, lines = _valid_parts(client)
    archive = _resigned(manifest, _bad_line(lines, title="", tags=["ok", "NOT OK!"]))
    response = client.post(IMPORT, data=archive, headers=GZIP)
    assert response.status_code == 422
    pointers = {error["pointer"] for error in response.json["errors"]}
    assert "#/tasks/0/title" in pointers


def test_size_limits_compressed_and_decompressed(tmp_path: Path) -> None:
    limit = 64 * 1024
    app = make_app("testing", BACKUP_DIR=str(tmp_path))
    app.config["WORKSPACE_IMPORT_MAX_BYTES"] = limit
    client = admin_client(app)
    before = all_rows(app)
    too_big = client.post(IMPORT, data=b"\0" * (limit + 1), headers=GZIP)
    assert too_big.status_code == 413
    bomb = gzip.compress(b"\0" * (limit * 50))  # a few hundred bytes that expand 50 times over
    assert len(bomb) < limit
    response = client.post(IMPORT, data=bomb, headers=GZIP)
    assert response.status_code == 422
    assert "decompressed" in response.json["detail"]
    assert all_rows(app) == before
    # The rest of the API keeps its own 1 MiB limit.
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_import_of_the_wrong_media_type_is_a_415(client: FlaskClient) -> None:
    response = client.post(IMPORT, data=b"{}", content_type="application/json")
    assert response.status_code == 415
