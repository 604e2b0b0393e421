"""Workspace import: strict validation of hostile archives, writes that are all or nothing, and
the importing platform administrator as the new workspace's owner; export for owners only.

Run on SQLite by default and on PostgreSQL with TEST_DATABASE_URL.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import backups as backups_package
from app.audit.models import AuditEventRow
from app.auth.models import MembershipRow
from app.backups import workspace_archive
from app.workspaces.models import DEFAULT_WORKSPACE_ID
from tests.auth import TestUser as User  # aliased: pytest collects Test* names
from tests.auth import add_user
from tests.conftest import make_app
from tests.test_backups import (
    GZIP,
    IMPORT,
    WORKSPACES,
    _archive,
    _bad_line,
    _resigned,
    _valid_parts,
    add_platform_admin,
    admin_client,
    all_rows,
    export,
    tasks_of,
    workspace_with_tasks,
)


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return make_app("testing", BACKUP_DIR=str(tmp_path / "backups"))


@pytest.fixture
def platform_admin(app: Flask) -> User:
    return add_platform_admin(app)


@pytest.fixture
def client(app: Flask, platform_admin: User) -> FlaskClient:
    """The platform administrator's client; it owns the workspaces it creates or imports."""
    return app.test_client(token=platform_admin.token)


@pytest.fixture
def parts(client: FlaskClient) -> tuple[dict[str, Any], bytes]:
    """A valid export's manifest and tasks.jsonl (two tasks)."""
    return _valid_parts(client)


def post(client: FlaskClient, archive: bytes, query: str = "") -> Any:
    return client.post(IMPORT + query, data=archive, headers=GZIP)


def assert_refused(response: Any, status: int, **error: str) -> None:
    """A problem+json with the request id, whose errors include ``error``; nothing imported."""
    assert response.status_code == status, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["request_id"] == response.headers["X-Request-ID"]
    assert error in [
        {key: value for key, value in found.items() if key in error}
        for found in response.json["errors"]
    ], response.json["errors"]


def first_task(lines: bytes) -> dict[str, Any]:
    return json.loads(lines.splitlines()[0])


def with_manifest(manifest: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**manifest, **changes}


def with_workspace(manifest: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**manifest, "workspace": {**manifest["workspace"], **changes}}


def counts(app: Flask) -> dict[str, int]:
    """Audit events per database: an import that fails must leave none behind."""
    found = {}
    with app.app_context():
        for name, engine in app.extensions["shards"].all_engines().items():
            with engine.connect() as connection:
                found[str(name)] = connection.scalar(
                    select(func.count()).select_from(AuditEventRow)
                )
    return found


# --- validation ------------------------------------------------------------------------------

NOT_CANONICAL: dict[str, Callable[[str], Any]] = {
    "an int": lambda _id: 5,
    "a bool": lambda _id: True,
    "null": lambda _id: None,
    "upper case": str.upper,
    "no hyphens": lambda task_id: task_id.replace("-", ""),
    "braces": lambda task_id: "{" + task_id + "}",
    "a URN": lambda task_id: "urn:uuid:" + task_id,
    "a trailing newline": lambda task_id: task_id + "\n",
}


@pytest.mark.parametrize("form", list(NOT_CANONICAL))
def test_a_task_id_must_be_a_canonical_uuid_string(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes], form: str
) -> None:
    manifest, lines = parts
    task_id = NOT_CANONICAL[form](first_task(lines)["id"])
    response = post(client, _resigned(manifest, _bad_line(lines, id=task_id)))
    assert_refused(response, 422, pointer="#/tasks/0/id", detail="must be a canonical UUID")


@pytest.mark.parametrize("form", ["an int", "upper case", "braces"])
def test_the_workspace_id_must_be_a_canonical_uuid_string(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes], form: str
) -> None:
    manifest, lines = parts
    bad = NOT_CANONICAL[form](manifest["workspace"]["id"])
    response = post(client, _resigned(with_workspace(manifest, id=bad), lines))
    assert_refused(response, 422, pointer="#/manifest/workspace/id")


@pytest.mark.parametrize("version", [True, 1.0, "1", 2, None])
def test_the_format_version_must_be_the_integer_1(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes], version: Any
) -> None:
    manifest, lines = parts
    response = post(client, _resigned(with_manifest(manifest, format_version=version), lines))
    assert_refused(
        response, 422, pointer="#/manifest/format_version", detail="must be the integer 1"
    )


NON_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999"]


@pytest.mark.parametrize("number", NON_JSON_NUMBERS)
def test_nan_and_infinity_are_refused_in_a_task(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes], number: str
) -> None:
    manifest, lines = parts
    first, *rest = lines.splitlines()
    # In a field nothing else checks the type of: the JSON itself must be refused.
    line = first[:-1] + f', "x": {number}}}'.encode()
    response = post(client, _resigned(manifest, b"\n".join([line, *rest]) + b"\n"))
    assert_refused(response, 422, pointer="#/tasks/0")
    assert number.lstrip("-") in json.dumps(response.json["errors"])


@pytest.mark.parametrize("number", NON_JSON_NUMBERS)
def test_nan_and_infinity_are_refused_in_the_manifest(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes], number: str
) -> None:
    manifest, lines = parts
    # In app_version, which nothing else reads: the JSON itself must be refused.
    text = json.dumps({**manifest, "app_version": "?"}).replace('"?"', number)
    response = post(client, raw_archive(text.encode(), lines))
    assert_refused(response, 422, pointer="#/manifest")


def raw_archive(manifest: bytes, lines: bytes) -> bytes:
    """An archive with exactly these bytes as its manifest (json.dumps would refuse nothing)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb") as compressed,
        tarfile.open(fileobj=compressed, mode="w") as tar,
    ):
        for name, data in (("manifest.json", manifest), ("tasks.jsonl", lines)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


BAD_TIMES = {
    "before 1970": "1969-12-31T23:59:59.999Z",
    "1900": "1900-01-01T00:00:00Z",
    "an offset taking it before 1970": "1970-01-01T00:30:00+01:00",
    "year 10000": "10000-01-01T00:00:00Z",
    "past 9999 once in UTC": "9999-12-31T23:30:00-01:00",
    "no time zone": "2026-01-01T00:00:00",
    "a number": 1767225600,
}


@pytest.mark.parametrize("field", ["created_at", "updated_at"])
@pytest.mark.parametrize("time", list(BAD_TIMES))
def test_task_timestamps_must_lie_between_1970_and_9999(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes], field: str, time: str
) -> None:
    manifest, lines = parts
    response = post(client, _resigned(manifest, _bad_line(lines, **{field: BAD_TIMES[time]})))
    assert_refused(response, 422, pointer=f"#/tasks/0/{field}")


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        (lambda m: with_manifest(m, exported_at="1969-07-20T20:17:40Z"), "exported_at"),
        (lambda m: with_workspace(m, created_at="1969-07-20T20:17:40Z"), "workspace/created_at"),
        (lambda m: with_workspace(m, created_at=None), "workspace/created_at"),
    ],
    ids=["exported_at", "workspace created_at", "workspace created_at missing"],
)
def test_manifest_timestamps_must_lie_between_1970_and_9999(
    client: FlaskClient,
    parts: tuple[dict[str, Any], bytes],
    change: Callable[[dict[str, Any]], dict[str, Any]],
    pointer: str,
) -> None:
    manifest, lines = parts
    response = post(client, _resigned(change(manifest), lines))
    assert_refused(response, 422, pointer=f"#/manifest/{pointer}")


def test_the_earliest_time_is_accepted_and_its_id_sorts_first(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes]
) -> None:
    manifest, lines = parts
    epoch = "1970-01-01T00:00:00.000Z"
    response = post(client, _resigned(manifest, _bad_line(lines, created_at=epoch)))
    assert response.status_code == 201, response.json
    tasks = tasks_of(client, response.json["workspace"]["id"])
    oldest = min(tasks, key=lambda task: task["id"])
    assert oldest["created_at"] == epoch
    assert uuid.UUID(oldest["id"]).int >> 80 == 0  # its UUIDv7 time: 0 ms, not wrapped around


@pytest.mark.parametrize("title", [5, None, ["a title"], {"text": "a title"}, True])
def test_a_title_must_be_a_string(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes], title: Any
) -> None:
    manifest, lines = parts
    response = post(client, _resigned(manifest, _bad_line(lines, title=title)))
    assert_refused(response, 422, pointer="#/tasks/0/title")


@pytest.mark.parametrize("name", [5, None, ["w"], ""])
def test_the_workspace_name_must_be_a_valid_name(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes], name: Any
) -> None:
    manifest, lines = parts
    response = post(client, _resigned(with_workspace(manifest, name=name), lines))
    assert_refused(response, 422, pointer="#/manifest/workspace/name")


def test_a_task_id_may_appear_once(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes]
) -> None:
    manifest, lines = parts
    first, second = lines.splitlines()
    again = json.dumps({**json.loads(second), "id": json.loads(first)["id"]}).encode()
    response = post(client, _resigned(manifest, b"\n".join([first, again]) + b"\n"))
    assert_refused(
        response, 422, pointer="#/tasks/1/id", detail="appears twice: #/tasks/0/id is the same"
    )


def test_the_line_count_is_checked_before_any_line_is_parsed(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes]
) -> None:
    manifest, lines = parts
    garbage = lines + b"{not json\n" * 10_000
    files = {"size": len(garbage), "sha256": hashlib.sha256(garbage).hexdigest(), "lines": 2}
    response = post(client, _archive({**manifest, "files": {"tasks.jsonl": files}}, garbage))
    assert_refused(response, 422, pointer="#/manifest/files/tasks.jsonl/lines")
    assert len(response.json["errors"]) == 1  # no line was looked at


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("?name=a&name=b", "must be given once"),
        ("?name=a&name=a", "must be given once"),
        ("?name=", "must be at least"),
        ("?name=" + "x" * 101, "must be at most"),
    ],
)
def test_a_repeated_or_invalid_name_parameter_is_a_400_before_the_body_is_read(
    client: FlaskClient, query: str, detail: str
) -> None:
    response = post(client, b"not even an archive", query)
    assert_refused(response, 400, parameter="name")
    assert detail in response.json["errors"][0]["detail"]


def test_the_name_parameter_is_trimmed_and_used(
    client: FlaskClient, parts: tuple[dict[str, Any], bytes]
) -> None:
    manifest, lines = parts
    response = post(client, _resigned(manifest, lines), "?name=%20Renamed%20")
    assert response.status_code == 201, response.json
    assert response.json["workspace"]["name"] == "Renamed"


# --- all or nothing ----------------------------------------------------------------------------


def failing_event(action: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make recording ``action`` fail, wherever the import records it."""
    for module in (workspace_archive, backups_package):
        original = getattr(module, "record_event", None)
        if original is None:
            continue

        def record(session: Session, *, _original: Any = original, **kwargs: Any) -> Any:
            if kwargs["action"] == action:
                raise OperationalError("INSERT INTO audit_events", {}, Exception("disk full"))
            return _original(session, **kwargs)

        monkeypatch.setattr(module, "record_event", record)


@pytest.mark.parametrize("shards", ["two shards", "one database"])
@pytest.mark.parametrize("action", ["workspace.created", "workspace.imported"])
def test_an_import_whose_audit_event_fails_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: str, action: str
) -> None:
    settings = {"SHARD_URLS": ""} if shards == "one database" else {}
    app = make_app("testing", BACKUP_DIR=str(tmp_path), **settings)
    client = admin_client(app)
    archive = export(client, workspace_with_tasks(client)["id"])
    before, events = all_rows(app), counts(app)
    failing_event(action, monkeypatch)

    response = post(client, archive)
    assert response.status_code in {500, 503}, response.json
    assert all_rows(app) == before
    assert counts(app) == events
    monkeypatch.undo()
    imported = post(client, archive)
    assert imported.status_code == 201, imported.json
    assert len(tasks_of(client, imported.json["workspace"]["id"])) == 2


def test_an_imported_workspace_has_its_events_with_its_entry(
    client: FlaskClient, platform_admin: User
) -> None:
    app = client.application
    archive = export(client, workspace_with_tasks(client)["id"])
    imported = post(client, archive)
    assert imported.status_code == 201
    new_id = uuid.UUID(imported.json["workspace"]["id"])
    with app.app_context(), app.extensions["shards"].control.connect() as connection:
        events = connection.execute(
            select(AuditEventRow.action, AuditEventRow.actor, AuditEventRow.changes)
            .where(AuditEventRow.workspace_id == new_id)
            .order_by(AuditEventRow.sequence)
        ).all()
    assert [(action, actor) for action, actor, _ in events] == [
        ("workspace.created", f"user:{platform_admin.id}"),
        ("workspace.imported", f"user:{platform_admin.id}"),
    ]
    assert events[0].changes["shard"]["after"] == imported.json["workspace"]["shard"]
    assert events[1].changes["tasks"] == {"before": None, "after": 2}


def test_a_directory_commit_that_happened_after_all_keeps_the_tasks(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control database's COMMIT reached the server, then the connection broke: the
    directory entry exists, so its tasks must not be removed."""
    app = client.application
    source = workspace_with_tasks(client)
    archive = export(client, source["id"])
    control = app.extensions["shards"].control
    write = getattr(workspace_archive, "_write", None)

    @contextmanager
    def commit_then_fail(session: Session) -> Iterator[None]:
        assert write is not None
        with write(session):
            yield
        if session.get_bind() is control:
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(workspace_archive, "_write", commit_then_fail, raising=False)
    response = post(client, archive)
    assert response.status_code in {500, 503}
    listed = client.get(WORKSPACES + "?per_page=100").json["items"]
    imported = {item["id"] for item in listed} - {str(DEFAULT_WORKSPACE_ID), source["id"]}
    assert len(imported) == 1, listed
    assert len(tasks_of(client, imported.pop())) == 2


# --- who owns an import, who may export ---------------------------------------------------------


def memberships_of(app: Flask, workspace_id: str) -> list[tuple[uuid.UUID, str]]:
    with app.app_context(), app.extensions["shards"].control.connect() as connection:
        rows = connection.execute(
            select(MembershipRow.user_id, MembershipRow.role).where(
                MembershipRow.workspace_id == uuid.UUID(workspace_id)
            )
        ).all()
    return [(row.user_id, row.role) for row in rows]


def test_the_importing_platform_admin_owns_the_imported_workspace(
    app: Flask, client: FlaskClient, platform_admin: User
) -> None:
    """The default workspace's owner exports it; a platform administrator, member of nothing,
    imports it: the new workspace is the importer's alone, as one they had created."""
    owner = app.test_client()  # the default workspace's owner
    added = owner.post(f"{WORKSPACES}/{DEFAULT_WORKSPACE_ID}/tasks", json={"title": "t"})
    assert added.status_code == 201
    archive = export(owner, str(DEFAULT_WORKSPACE_ID))
    assert client.get(f"{WORKSPACES}/{DEFAULT_WORKSPACE_ID}").status_code == 404  # not theirs

    imported = post(client, archive)
    assert imported.status_code == 201, imported.json
    new_id = imported.json["workspace"]["id"]
    assert memberships_of(app, new_id) == [(platform_admin.id, "owner")]
    # As its owner: it is listed, it reads, it writes, it exports (owners only).
    assert [w["id"] for w in client.get(WORKSPACES).json["items"]] == [new_id]
    assert client.get(imported.headers["Location"]).status_code == 200
    assert [t["title"] for t in tasks_of(client, new_id)] == ["t"]
    created = client.post(f"{WORKSPACES}/{new_id}/tasks", json={"title": "after import"})
    assert created.status_code == 201
    assert tasks_of(client, new_id)[0]["title"] == "after import"
    export(client, new_id)
    # The source's owner got nothing from the import: the copy is not theirs.
    assert owner.get(f"{WORKSPACES}/{new_id}").status_code == 404
    assert new_id not in {w["id"] for w in owner.get(WORKSPACES).json["items"]}


def exported_events(app: Flask, workspace_id: str) -> int:
    with app.app_context(), app.extensions["shards"].control.connect() as connection:
        return connection.scalar(
            select(func.count())
            .select_from(AuditEventRow)
            .where(
                AuditEventRow.action == "workspace.exported",
                AuditEventRow.workspace_id == uuid.UUID(workspace_id),
            )
        )


def test_export_is_for_the_workspace_owners_only(app: Flask, client: FlaskClient) -> None:
    workspace = workspace_with_tasks(client, "private")  # the platform admin owns it
    url = f"{WORKSPACES}/{workspace['id']}/export"
    for role in ("admin", "member", "viewer"):
        member = add_user(
            app, f"{role}@example.com", role=role, workspace_id=uuid.UUID(workspace["id"])
        )
        refused = app.test_client(token=member.token).get(url)
        assert refused.status_code == 403, role
        assert refused.content_type == "application/problem+json"
        assert refused.json["type"] == "/problems/permission-denied"
        assert "Content-Disposition" not in refused.headers
    # Not a member: the workspace is not there (the default workspace's owner, another owner).
    stranger = app.test_client()
    refused = stranger.get(url)
    unknown = stranger.get(f"{WORKSPACES}/{uuid.uuid4()}/export")
    assert refused.status_code == unknown.status_code == 404
    assert refused.json["type"] == unknown.json["type"] == "/problems/workspace-not-found"
    assert refused.json["detail"] == unknown.json["detail"]
    anonymous = app.test_client(token="").get(url)
    assert anonymous.status_code == 401
    assert anonymous.json["type"] == "/problems/authentication-required"
    assert exported_events(app, workspace["id"]) == 0  # a refusal exports nothing

    # A second owner may; a platform admin owes it to being the owner, not to being an admin.
    co_owner = add_user(
        app, "co-owner@example.com", role="owner", workspace_id=uuid.UUID(workspace["id"])
    )
    export(app.test_client(token=co_owner.token), workspace["id"])
    export(client, workspace["id"])
    assert exported_events(app, workspace["id"]) == 2
