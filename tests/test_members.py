"""Workspace memberships through the HTTP API: who may add, change and remove whom, the last owner
who always stays, leaving, changes that take effect at the very next request, tenant isolation,
and the audit events with their real actor."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.workspaces.models import DEFAULT_WORKSPACE_ID
from tests.auth import TestUser as User
from tests.auth import add_member, add_user
from tests.databases import POSTGRES_ADMIN_URL
from tests.test_errors import assert_problem

WORKSPACES = "/api/v2/workspaces"
DEFAULT = f"{WORKSPACES}/{DEFAULT_WORKSPACE_ID}"
MEMBERS = f"{DEFAULT}/members"
ROLES = ("owner", "admin", "member", "viewer")


# --- helpers -------------------------------------------------------------------------------------


def owner(app: Flask) -> User:
    return app.extensions["test_owner"]


def as_user(app: Flask, user: User) -> FlaskClient:
    return app.test_client(token=user.token)


def member(app: Flask, role: str, email: str | None = None) -> User:
    """A new user with ``role`` in the default workspace."""
    return add_member(
        app, DEFAULT_WORKSPACE_ID, role, email or f"{role}-{uuid.uuid4().hex[:8]}@x.io"
    )


def roles(client: FlaskClient, workspace: str = DEFAULT) -> dict[str, str]:
    """user id -> role, as the owner sees them."""
    response = client.get(f"{workspace}/members")
    assert response.status_code == 200, response.json
    return {item["user_id"]: item["role"] for item in response.json["items"]}


def audit_events(client: FlaskClient, action: str, workspace: str = DEFAULT) -> list[dict]:
    response = client.get(f"{workspace}/audit", query_string={"action": action, "limit": 100})
    assert response.status_code == 200, response.json
    return response.json["items"]


# --- listing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_lists_the_members(app: Flask, client: FlaskClient, role: str) -> None:
    me = owner(app) if role == "owner" else member(app, role, f"{role}@example.com")
    response = as_user(app, me).get(MEMBERS)
    assert response.status_code == 200
    items = {item["user_id"]: item for item in response.json["items"]}
    assert items[str(owner(app).id)]["role"] == "owner"
    assert items[str(me.id)]["role"] == role
    assert items[str(me.id)]["email"] == me.email
    assert set(items[str(me.id)]) == {"user_id", "email", "role", "created_at", "updated_at"}


# --- adding --------------------------------------------------------------------------------------


@pytest.mark.parametrize("adder", ["owner", "admin"])
@pytest.mark.parametrize("role", ["admin", "member", "viewer"])
def test_owners_and_admins_add_existing_accounts(
    app: Flask, client: FlaskClient, adder: str, role: str
) -> None:
    who = client if adder == "owner" else as_user(app, member(app, "admin"))
    grace = add_user(app, "grace@example.com")
    response = who.post(MEMBERS, json={"email": "grace@example.com", "role": role})
    assert response.status_code == 201
    assert response.headers["Location"] == f"{MEMBERS}/{grace.id}"
    assert response.json["user_id"] == str(grace.id)
    assert response.json["email"] == "grace@example.com"
    assert response.json["role"] == role
    assert roles(client)[str(grace.id)] == role
    # The new member's very next request sees the workspace.
    assert as_user(app, grace).get(DEFAULT).status_code == 200


def test_the_email_is_normalised_before_the_lookup(app: Flask, client: FlaskClient) -> None:
    grace = add_user(app, "grace@example.com")
    response = client.post(MEMBERS, json={"email": "  grace@EXAMPLE.com ", "role": "member"})
    assert response.status_code == 201
    assert response.json["user_id"] == str(grace.id)


def test_an_unknown_email_is_422(client: FlaskClient) -> None:
    problem = assert_problem(
        client.post(MEMBERS, json={"email": "nobody@example.com", "role": "member"}), 422
    )
    assert [error["pointer"] for error in problem["errors"]] == ["#/email"]
    assert len(roles(client)) == 1


def test_an_existing_member_is_409(app: Flask, client: FlaskClient) -> None:
    grace = member(app, "viewer", "grace@example.com")
    assert_problem(client.post(MEMBERS, json={"email": grace.email, "role": "admin"}), 409)
    assert_problem(client.post(MEMBERS, json={"email": owner(app).email, "role": "viewer"}), 409)
    assert roles(client)[str(grace.id)] == "viewer"
    assert roles(client)[str(owner(app).id)] == "owner"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"email": "grace@example.com", "role": "superuser"}, "#/role"),
        ({"email": "grace@example.com", "role": "OWNER"}, "#/role"),
        ({"email": "grace@example.com", "role": None}, "#/role"),
        ({"email": "grace@example.com"}, "#/role"),
        ({"role": "member"}, "#/email"),
        ({"email": 42, "role": "member"}, "#/email"),
        ({"email": "not an email", "role": "member"}, "#/email"),
        ({"email": "grace@example.com", "role": "member", "note": "hi"}, "#/note"),
    ],
)
def test_invalid_member_input_is_422(
    app: Flask, client: FlaskClient, body: dict[str, Any], pointer: str
) -> None:
    add_user(app, "grace@example.com")
    problem = assert_problem(client.post(MEMBERS, json=body), 422)
    assert pointer in [error["pointer"] for error in problem["errors"]]
    assert len(roles(client)) == 1


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_add(app: Flask, client: FlaskClient, role: str) -> None:
    add_user(app, "grace@example.com")
    them = as_user(app, member(app, role))
    for new_role in ("viewer", "owner"):
        body = {"email": "grace@example.com", "role": new_role}
        assert_problem(them.post(MEMBERS, json=body), 403)
    assert len(roles(client)) == 2


# --- owners: only owners touch owners ------------------------------------------------------------


def test_an_admin_cannot_make_add_change_or_remove_owners(any_app: Flask) -> None:
    app, client = any_app, any_app.test_client()
    admin = as_user(app, member(app, "admin"))
    regular = member(app, "member")
    add_user(app, "grace@example.com")
    first_owner = str(owner(app).id)
    second_owner = member(app, "owner")

    for response in (
        admin.post(MEMBERS, json={"email": "grace@example.com", "role": "owner"}),
        admin.patch(f"{MEMBERS}/{regular.id}", json={"role": "owner"}),
        admin.patch(f"{MEMBERS}/{first_owner}", json={"role": "admin"}),
        admin.patch(f"{MEMBERS}/{second_owner.id}", json={"role": "viewer"}),
        admin.delete(f"{MEMBERS}/{first_owner}"),
        admin.delete(f"{MEMBERS}/{second_owner.id}"),
    ):
        assert_problem(response, 403)
    current = roles(client)
    assert current[first_owner] == current[str(second_owner.id)] == "owner"
    assert current[str(regular.id)] == "member"
    assert len(current) == 4  # grace was not added


def test_an_admin_cannot_promote_themselves_to_owner(app: Flask, client: FlaskClient) -> None:
    admin_user = member(app, "admin")
    response = as_user(app, admin_user).patch(f"{MEMBERS}/{admin_user.id}", json={"role": "owner"})
    assert_problem(response, 403)
    assert roles(client)[str(admin_user.id)] == "admin"


def test_an_admin_manages_the_roles_below_owner(app: Flask, client: FlaskClient) -> None:
    admin = as_user(app, member(app, "admin"))
    other_admin, regular = member(app, "admin"), member(app, "member")
    assert admin.patch(f"{MEMBERS}/{regular.id}", json={"role": "admin"}).status_code == 200
    assert admin.patch(f"{MEMBERS}/{other_admin.id}", json={"role": "viewer"}).status_code == 200
    assert admin.delete(f"{MEMBERS}/{other_admin.id}").status_code == 204
    current = roles(client)
    assert current[str(regular.id)] == "admin"
    assert str(other_admin.id) not in current


def test_an_owner_adds_promotes_demotes_and_removes_owners(app: Flask, client: FlaskClient) -> None:
    grace = add_user(app, "grace@example.com")
    regular = member(app, "member")
    assert client.post(MEMBERS, json={"email": grace.email, "role": "owner"}).status_code == 201
    promoted = client.patch(f"{MEMBERS}/{regular.id}", json={"role": "owner"})
    assert promoted.status_code == 200
    assert promoted.json["role"] == "owner"
    assert promoted.json["email"] == regular.email
    demoted = client.patch(f"{MEMBERS}/{grace.id}", json={"role": "admin"})
    assert demoted.status_code == 200
    assert demoted.json["role"] == "admin"
    assert client.delete(f"{MEMBERS}/{regular.id}").status_code == 204
    assert roles(client) == {str(owner(app).id): "owner", str(grace.id): "admin"}


@pytest.mark.parametrize("body", [{"role": "chief"}, {"role": None}, {}, {"role": "admin", "x": 1}])
def test_an_invalid_role_change_is_422(app: Flask, client: FlaskClient, body: dict) -> None:
    regular = member(app, "member")
    assert_problem(client.patch(f"{MEMBERS}/{regular.id}", json=body), 422)
    assert roles(client)[str(regular.id)] == "member"


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_change_or_remove_others(
    app: Flask, client: FlaskClient, role: str
) -> None:
    them = as_user(app, member(app, role))
    other = member(app, "viewer")
    assert_problem(them.patch(f"{MEMBERS}/{other.id}", json={"role": "member"}), 403)
    assert_problem(them.delete(f"{MEMBERS}/{other.id}"), 403)
    assert_problem(them.delete(f"{MEMBERS}/{owner(app).id}"), 403)
    assert roles(client)[str(other.id)] == "viewer"


def test_a_member_cannot_promote_themselves(app: Flask, client: FlaskClient) -> None:
    regular = member(app, "member")
    response = as_user(app, regular).patch(f"{MEMBERS}/{regular.id}", json={"role": "admin"})
    assert_problem(response, 403)
    assert roles(client)[str(regular.id)] == "member"


def test_an_unknown_member_is_404(app: Flask, client: FlaskClient) -> None:
    outsider = add_user(app, "outsider@example.com")
    for user_id in (outsider.id, uuid.uuid4()):
        assert_problem(client.patch(f"{MEMBERS}/{user_id}", json={"role": "viewer"}), 404)
        assert_problem(client.delete(f"{MEMBERS}/{user_id}"), 404)


def test_a_member_of_another_workspace_cannot_be_touched_from_here(
    app: Flask, client: FlaskClient
) -> None:
    """The owner of A and B: B's member is not A's, whatever the URL says."""
    other = client.post(WORKSPACES, json={"name": "B"}).json["id"]
    grace = add_member(app, other, "member", "grace@example.com")
    assert_problem(client.patch(f"{MEMBERS}/{grace.id}", json={"role": "admin"}), 404)
    assert_problem(client.delete(f"{MEMBERS}/{grace.id}"), 404)
    assert roles(client, f"{WORKSPACES}/{other}")[str(grace.id)] == "member"


# --- the last owner ------------------------------------------------------------------------------


def test_the_last_owner_can_be_neither_demoted_nor_removed(any_app: Flask) -> None:
    app, client = any_app, any_app.test_client()
    me = str(owner(app).id)
    for role in ("admin", "member", "viewer"):
        problem = assert_problem(client.patch(f"{MEMBERS}/{me}", json={"role": role}), 409)
        assert problem["type"].endswith("/last-owner")
    assert_problem(client.delete(f"{MEMBERS}/{me}"), 409)
    assert roles(client) == {me: "owner"}
    assert client.get(DEFAULT).status_code == 200


def test_keeping_the_role_of_the_last_owner_is_fine(app: Flask, client: FlaskClient) -> None:
    response = client.patch(f"{MEMBERS}/{owner(app).id}", json={"role": "owner"})
    assert response.status_code == 200
    assert response.json["role"] == "owner"


def test_with_two_owners_one_may_go_then_the_other_must_stay(
    app: Flask, client: FlaskClient
) -> None:
    first, second = owner(app), member(app, "owner")
    assert client.patch(f"{MEMBERS}/{second.id}", json={"role": "admin"}).status_code == 200
    assert_problem(client.patch(f"{MEMBERS}/{first.id}", json={"role": "admin"}), 409)
    # The demoted owner is an admin now: an owner is out of their reach.
    assert_problem(as_user(app, second).patch(f"{MEMBERS}/{first.id}", json={"role": "admin"}), 403)
    assert roles(client) == {str(first.id): "owner", str(second.id): "admin"}


def test_two_owners_demoting_each_other_in_turn_keep_one_owner(app: Flask) -> None:
    first, second = owner(app), member(app, "owner")
    by_first, by_second = as_user(app, first), as_user(app, second)
    assert by_first.patch(f"{MEMBERS}/{second.id}", json={"role": "member"}).status_code == 200
    late = by_second.patch(f"{MEMBERS}/{first.id}", json={"role": "member"})
    assert late.status_code in {403, 409}  # no longer an owner; and first is the last one
    assert roles(by_first) == {str(first.id): "owner", str(second.id): "member"}


def test_two_owners_leaving_in_turn_keep_one_owner(app: Flask) -> None:
    first, second = owner(app), member(app, "owner")
    assert as_user(app, first).delete(f"{MEMBERS}/{first.id}").status_code == 204
    assert_problem(as_user(app, second).delete(f"{MEMBERS}/{second.id}"), 409)
    assert roles(as_user(app, second)) == {str(second.id): "owner"}


def _at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.skipif(
    not POSTGRES_ADMIN_URL, reason="concurrent writers need PostgreSQL (TEST_DATABASE_URL)"
)
@pytest.mark.parametrize("attempt", range(5))
def test_two_owners_demoting_each_other_at_once_keep_one_owner(app: Flask, attempt: int) -> None:
    first, second = owner(app), member(app, "owner")
    by_first, by_second = as_user(app, first), as_user(app, second)
    responses = _at_once(
        lambda: by_first.patch(f"{MEMBERS}/{second.id}", json={"role": "member"}),
        lambda: by_second.patch(f"{MEMBERS}/{first.id}", json={"role": "member"}),
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses[0] == 200
    assert statuses[1] in {403, 409}
    assert sorted(roles(by_first if responses[0].status_code == 200 else by_second).values()) == [
        "member",
        "owner",
    ]


@pytest.mark.skipif(
    not POSTGRES_ADMIN_URL, reason="concurrent writers need PostgreSQL (TEST_DATABASE_URL)"
)
@pytest.mark.parametrize("attempt", range(5))
def test_two_owners_leaving_at_once_keep_one_owner(app: Flask, attempt: int) -> None:
    first, second = owner(app), member(app, "owner")
    responses = _at_once(
        lambda: as_user(app, first).delete(f"{MEMBERS}/{first.id}"),
        lambda: as_user(app, second).delete(f"{MEMBERS}/{second.id}"),
    )
    assert sorted(response.status_code for response in responses) == [204, 409]
    stayed = first if responses[1].status_code == 204 else second
    assert roles(as_user(app, stayed)) == {str(stayed.id): "owner"}


# --- leaving -------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "member", "viewer"])
def test_anyone_may_leave(app: Flask, client: FlaskClient, role: str) -> None:
    me = member(app, role)
    mine = as_user(app, me)
    assert mine.delete(f"{MEMBERS}/{me.id}").status_code == 204
    assert str(me.id) not in roles(client)
    assert_problem(mine.get(DEFAULT), 404)


def test_an_owner_may_leave_when_another_owner_stays(app: Flask, client: FlaskClient) -> None:
    second = member(app, "owner")
    assert as_user(app, second).delete(f"{MEMBERS}/{second.id}").status_code == 204
    assert roles(client) == {str(owner(app).id): "owner"}


# --- changes take effect at the next request -----------------------------------------------------


def test_a_removed_member_gets_404_at_the_very_next_request(
    app: Flask, client: FlaskClient
) -> None:
    grace = member(app, "admin")
    theirs = as_user(app, grace)
    task = theirs.post(f"{DEFAULT}/tasks", json={"title": "grace's"})
    assert task.status_code == 201

    assert client.delete(f"{MEMBERS}/{grace.id}").status_code == 204
    for response in (
        theirs.get(DEFAULT),
        theirs.get(f"{DEFAULT}/tasks"),
        theirs.get(task.headers["Location"]),
        theirs.post(f"{DEFAULT}/tasks", json={"title": "after"}),
        theirs.get(MEMBERS),
        theirs.delete(f"{MEMBERS}/{grace.id}"),
    ):
        assert_problem(response, 404)
    assert str(DEFAULT_WORKSPACE_ID) not in [w["id"] for w in theirs.get(WORKSPACES).json["items"]]


def test_a_member_demoted_to_viewer_cannot_write_at_the_next_request(
    app: Flask, client: FlaskClient
) -> None:
    grace = member(app, "member")
    theirs = as_user(app, grace)
    task = theirs.post(f"{DEFAULT}/tasks", json={"title": "grace's"})
    assert task.status_code == 201

    assert client.patch(f"{MEMBERS}/{grace.id}", json={"role": "viewer"}).status_code == 200
    assert_problem(theirs.post(f"{DEFAULT}/tasks", json={"title": "after"}), 403)
    assert_problem(theirs.patch(task.headers["Location"], json={"title": "changed"}), 403)
    assert theirs.get(task.headers["Location"]).json["title"] == "grace's"  # still reads


def test_a_promotion_takes_effect_at_the_next_request(app: Flask, client: FlaskClient) -> None:
    grace = member(app, "viewer")
    theirs = as_user(app, grace)
    assert_problem(theirs.get(f"{DEFAULT}/api-keys"), 403)
    assert client.patch(f"{MEMBERS}/{grace.id}", json={"role": "admin"}).status_code == 200
    assert theirs.get(f"{DEFAULT}/api-keys").status_code == 200


# --- non-members ---------------------------------------------------------------------------------


def test_non_members_get_404_on_every_member_endpoint(any_app: Flask) -> None:
    app, client = any_app, any_app.test_client()
    stranger = add_user(app, "stranger@example.com")
    theirs = as_user(app, stranger)
    theirs_workspace = theirs.post(WORKSPACES, json={"name": "stranger's"})
    assert theirs_workspace.status_code == 201  # a member elsewhere, just not here
    add_user(app, "grace@example.com")
    me = owner(app).id

    for response in (
        theirs.get(MEMBERS),
        theirs.post(MEMBERS, json={"email": "grace@example.com", "role": "viewer"}),
        theirs.post(MEMBERS, json={"email": "stranger@example.com", "role": "owner"}),
        theirs.patch(f"{MEMBERS}/{me}", json={"role": "viewer"}),
        theirs.patch(f"{MEMBERS}/{stranger.id}", json={"role": "owner"}),
        theirs.delete(f"{MEMBERS}/{me}"),
        theirs.delete(f"{MEMBERS}/{stranger.id}"),
        theirs.get(f"{WORKSPACES}/{uuid.uuid4()}/members"),
    ):
        assert_problem(response, 404)
    assert roles(client) == {str(me): "owner"}


def test_members_need_a_token(any_app: Flask) -> None:
    response = any_app.test_client(token="").get(MEMBERS)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


# --- audit ---------------------------------------------------------------------------------------


def test_membership_changes_are_audited_with_the_actor(app: Flask, client: FlaskClient) -> None:
    admin = member(app, "admin")
    grace = add_user(app, "grace@example.com")
    by_admin = as_user(app, admin)
    assert by_admin.post(MEMBERS, json={"email": grace.email, "role": "viewer"}).status_code == 201
    assert client.patch(f"{MEMBERS}/{grace.id}", json={"role": "member"}).status_code == 200
    assert as_user(app, grace).delete(f"{MEMBERS}/{grace.id}").status_code == 204

    (added,) = audit_events(client, "membership.added")
    assert added["actor"] == f"user:{admin.id}"
    assert added["entity_type"] == "membership"
    assert added["entity_id"] == str(grace.id)
    assert added["changes"] == {"role": {"before": None, "after": "viewer"}}
    (changed,) = audit_events(client, "membership.role_changed")
    assert changed["actor"] == f"user:{owner(app).id}"
    assert changed["entity_id"] == str(grace.id)
    assert changed["changes"] == {"role": {"before": "viewer", "after": "member"}}
    (removed,) = audit_events(client, "membership.removed")
    assert removed["actor"] == f"user:{grace.id}"  # they left
    assert removed["entity_id"] == str(grace.id)
    assert removed["changes"] == {"role": {"before": "member", "after": None}}


def test_refused_and_empty_changes_are_not_audited(app: Flask, client: FlaskClient) -> None:
    regular = member(app, "member")
    assert client.patch(f"{MEMBERS}/{regular.id}", json={"role": "member"}).status_code == 200
    assert_problem(client.patch(f"{MEMBERS}/{owner(app).id}", json={"role": "viewer"}), 409)
    assert_problem(as_user(app, regular).delete(f"{MEMBERS}/{owner(app).id}"), 403)
    for action in ("membership.added", "membership.role_changed", "membership.removed"):
        assert audit_events(client, action) == []
