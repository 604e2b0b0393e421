"""IP allow and deny lists: what a rule may be, the platform's deny list refusing everything
before authentication (cached per process, reloaded within IP_RULES_REFRESH seconds), each
workspace's allow list, the management endpoints, their audit events, and a spoofed
X-Forwarded-For getting around neither list."""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, delete, event, insert, select
from sqlalchemy.engine import Engine

import app.ip_rules.service as ip_rules_module
from app import create_app
from app.audit.models import AuditEventRow
from app.auth.models import IpRuleRow
from app.auth.principal import SYSTEM, Principal, PrincipalKind
from app.db import db
from app.db.shards import shard_session, shards
from app.ip_rules import deny_list_of
from app.ip_rules.service import (
    IP_RULES_REFRESH,
    CompiledRules,
    DenyList,
    InvalidNetwork,
    IpListLockout,
    IpRuleExists,
    IpRuleService,
    check_deny_breadth,
    client_address,
    load_deny_networks,
    parse_network,
    workspace_allows,
)
from app.tasks.models import new_task_id, utc_now
from app.workspaces.models import DEFAULT_WORKSPACE_ID
from app.workspaces.service import WorkspaceService
from tests import auth
from tests.auth import add_member, add_user
from tests.conftest import make_app
from tests.spec_examples import example_body
from tests.test_errors import assert_problem

DENY = "/api/v2/admin/ip-deny-list"
WORKSPACES = "/api/v2/workspaces"
DEFAULT = f"{WORKSPACES}/{DEFAULT_WORKSPACE_ID}"
ALLOW = f"{DEFAULT}/ip-allow-list"
TASKS = f"{DEFAULT}/tasks"
TEST_CLIENT_ADDRESS = "127.0.0.1"  # werkzeug's test client connects from here
DENIED = "203.0.113.9"  # inside the rule the tests deny, 203.0.113.0/24
ALLOWED = "198.51.100.7"  # inside the rule the tests allow, 198.51.100.0/24
PROXY = "10.0.0.1"


def from_address(address: str, **headers: str) -> dict[str, Any]:
    """Request arguments: a connection from ``address`` (the socket's REMOTE_ADDR)."""
    return {"environ_base": {"REMOTE_ADDR": address}, "headers": headers}


def control_engine(app: Flask) -> Engine:
    return app.extensions["shards"].control


def store_rule(app: Flask, network: str, workspace_id: uuid.UUID | None = None) -> None:
    """A rule written straight into the table (as another worker or the CLI would)."""
    with control_engine(app).begin() as connection:
        connection.execute(
            insert(IpRuleRow).values(
                id=new_task_id(),
                workspace_id=workspace_id,
                network=network,
                note="",
                created_by=None,
                created_at=utc_now(),
            )
        )


def drop_rules(app: Flask) -> None:
    with control_engine(app).begin() as connection:
        connection.execute(delete(IpRuleRow))


@contextmanager
def counted_queries(engine: Engine) -> Iterator[list[str]]:
    """The reads of ip_rules on ``engine`` while the block runs."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "ip_rules" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- What a rule may be --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("192.0.2.7/32", "192.0.2.7/32"),
        ("10.0.0.0/024", "10.0.0.0/24"),
        ("2001:DB8:0:0::/32", "2001:db8::/32"),
        ("2001:db8::1", "2001:db8::1/128"),
        ("0:0:0:0:0:0:0:1/128", "::1/128"),
        ("::ffff:192.0.2.0/120", "192.0.2.0/24"),  # IPv4-mapped: stored as what it means
        ("::ffff:192.0.2.7", "192.0.2.7/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_networks_are_stored_normalised(given: str, stored: str) -> None:
    assert str(parse_network(given)) == stored


@pytest.mark.parametrize(
    "junk",
    [
        None,
        42,
        "",
        "abc",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "010.1.1.1",  # a leading zero: octal or decimal?
        "1.2.3.4/33",
        "::/129",
        "1.2.3.4/999",
        "1.2.3.4/-1",
        "1.2.3.4/",
        "/24",
        "1.2.3.4/255.255.255.0",  # netmasks: CIDR only
        "fe80::1%eth0",  # zone ids
        "fe80::%1/64",
        " 1.2.3.4",
        "1.2.3.4 ",
        "1.2.3.4/ 24",
        "١٩٢.٠.٢.٠/24",  # Arabic-Indic digits
        "１.２.３.４",  # fullwidth digits
        "1.2.3.4/２４",
        "1" * 10_000,
        "<script>alert(1)</script>",
    ],
)
def test_anything_but_plain_ascii_cidr_is_refused(junk: Any) -> None:
    with pytest.raises(InvalidNetwork) as refused:
        parse_network(junk)
    if isinstance(junk, str) and len(junk) > 4:
        assert junk not in str(refused.value)  # never echoed back


@pytest.mark.parametrize(
    ("given", "network"),
    [("10.0.0.5/8", "10.0.0.0/8"), ("2001:db8::1/32", "2001:db8::/32")],
)
def test_host_bits_are_refused_and_the_network_suggested(given: str, network: str) -> None:
    with pytest.raises(InvalidNetwork, match=f"the network is {network}"):
        parse_network(given)


@pytest.mark.parametrize("broad", ["0.0.0.0/0", "::/0", "0.0.0.0/7", "128.0.0.0/1", "2000::/15"])
def test_the_deny_list_refuses_rules_broader_than_an_ipv4_8_or_an_ipv6_16(broad: str) -> None:
    with pytest.raises(InvalidNetwork, match="too broad"):
        check_deny_breadth(parse_network(broad))


@pytest.mark.parametrize("narrow_enough", ["10.0.0.0/8", "2001::/16", "192.0.2.7/32"])
def test_the_deny_list_takes_an_ipv4_8_an_ipv6_16_and_narrower(narrow_enough: str) -> None:
    check_deny_breadth(parse_network(narrow_enough))


def test_an_ipv4_mapped_client_address_is_judged_as_ipv4() -> None:
    rules = CompiledRules([parse_network("192.0.2.0/24")])
    mapped = client_address("::ffff:192.0.2.7")
    assert mapped == ipaddress.IPv4Address("192.0.2.7")
    assert mapped in rules
    assert client_address("::ffff:192.0.3.7") not in rules
    # The same 32 bits as an IPv6 address are a different address.
    assert ipaddress.IPv6Address(int(ipaddress.IPv4Address("192.0.2.7"))) not in rules


@pytest.mark.parametrize("junk", [None, "", "unknown", "1.2.3.4:5678", "x" * 1000])
def test_a_client_address_that_is_not_one_matches_nothing(junk: str | None) -> None:
    assert client_address(junk) is None


def test_compiled_rules_match_exactly_their_networks() -> None:
    rules = CompiledRules(
        parse_network(text)
        for text in ("203.0.113.0/24", "198.51.100.7", "10.0.0.0/8", "2001:db8::/32", "::1")
    )
    assert rules.size == 5
    inside = ["203.0.113.0", "203.0.113.255", "198.51.100.7", "10.255.255.255", "2001:db8::"]
    inside += ["2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "::1"]
    outside = ["203.0.114.0", "203.0.112.255", "198.51.100.6", "198.51.100.8", "11.0.0.0"]
    outside += ["2001:db9::", "::2", "0.0.0.1"]
    for text in inside:
        assert ipaddress.ip_address(text) in rules, text
    for text in outside:
        assert ipaddress.ip_address(text) not in rules, text
    assert not CompiledRules([])


# --- The deny list's cache -----------------------------------------------------------------------


def test_the_deny_list_is_read_once_then_at_most_every_refresh_interval(app: Flask) -> None:
    engine = control_engine(app)
    clock = FakeClock()
    deny_list = DenyList(functools.partial(load_deny_networks, engine), clock=clock)
    store_rule(app, "203.0.113.0/24")
    with counted_queries(engine) as queries:
        assert deny_list.denies(DENIED)
        assert len(queries) == 1
        drop_rules(app)  # another worker removes the rule
        for step in (0.0, 1.0, IP_RULES_REFRESH - 0.01):
            clock.now = 1000.0 + step
            assert deny_list.denies(DENIED)  # this worker's copy, not the database
            assert not deny_list.denies(ALLOWED)
        assert len(queries) == 1  # no query per request in between
        clock.now = 1000.0 + IP_RULES_REFRESH
        assert not deny_list.denies(DENIED)
        assert len(queries) == 2
        store_rule(app, "203.0.113.0/24")
        deny_list.invalidate()  # this worker changed the list: at once
        assert deny_list.denies(DENIED)
        assert len(queries) == 3


def test_an_unreachable_database_keeps_the_last_deny_list_and_is_retried_later(
    app: Flask, tmp_path: Any
) -> None:
    clock = FakeClock()
    deny_list = DenyList(functools.partial(load_deny_networks, control_engine(app)), clock=clock)
    store_rule(app, "203.0.113.0/24")
    assert deny_list.denies(DENIED)
    broken = create_engine(f"sqlite:///{tmp_path}/no/such/dir/control.db")
    deny_list.load = functools.partial(load_deny_networks, broken)
    clock.now += IP_RULES_REFRESH
    assert deny_list.denies(DENIED)  # kept, not dropped (and no exception)
    with counted_queries(control_engine(app)) as queries:
        deny_list.load = functools.partial(load_deny_networks, control_engine(app))
        clock.now += 1.0
        assert deny_list.denies(DENIED)
        assert queries == []  # the failed attempt counts: no retry on every request
        clock.now += IP_RULES_REFRESH
        assert deny_list.denies(DENIED)
        assert len(queries) == 1
    broken.dispose()


def test_no_rule_means_no_parse_and_nothing_denied(app: Flask) -> None:
    deny_list = DenyList(functools.partial(load_deny_networks, control_engine(app)))
    assert not deny_list.denies(DENIED)
    assert not deny_list.denies("not an address")
    assert not deny_list.rules()


# --- The workspace check -------------------------------------------------------------------------


def test_workspace_allows_with_one_query(app: Flask) -> None:
    other = uuid.UUID(int=0)  # a workspace id with no rules
    with app.app_context():
        session = db.session()
        assert workspace_allows(session, DEFAULT_WORKSPACE_ID, DENIED)  # no list: all allowed
        assert workspace_allows(session, DEFAULT_WORKSPACE_ID, None)
        session.rollback()  # end the read: SQLite's shared lock would block the writes
        store_rule(app, "198.51.100.0/24", DEFAULT_WORKSPACE_ID)
        store_rule(app, "2001:db8::/32", DEFAULT_WORKSPACE_ID)
        with counted_queries(control_engine(app)) as queries:
            assert workspace_allows(session, DEFAULT_WORKSPACE_ID, ALLOWED)
            assert len(queries) == 1
        assert workspace_allows(session, DEFAULT_WORKSPACE_ID, f"::ffff:{ALLOWED}")
        assert workspace_allows(session, DEFAULT_WORKSPACE_ID, "2001:db8::42")
        assert not workspace_allows(session, DEFAULT_WORKSPACE_ID, DENIED)
        assert not workspace_allows(session, DEFAULT_WORKSPACE_ID, None)
        assert not workspace_allows(session, DEFAULT_WORKSPACE_ID, "garbage")
        assert workspace_allows(session, other, DENIED)


# --- The service without HTTP (the CLI's view) ---------------------------------------------------


def service_as(app: Flask, principal: Principal) -> IpRuleService:
    session = db.session()
    return IpRuleService(
        session, WorkspaceService(session, shards(), shard_session, principal=principal)
    )


def test_the_system_manages_lists_without_a_caller_address(app: Flask) -> None:
    with app.app_context():
        service = service_as(app, SYSTEM)
        rule = service.allow(DEFAULT_WORKSPACE_ID, {"network": "198.51.100.0/24"}, None)
        assert rule.network == "198.51.100.0/24"
        assert rule.created_by is None
        denied = service.deny({"network": "203.0.113.0/24", "note": "abuse"}, None)
        assert [r.id for r in service.list_denied()] == [denied.id]
        with pytest.raises(IpRuleExists):
            service.deny({"network": "203.0.113.0/24"}, None)
        service.remove_allowed(DEFAULT_WORKSPACE_ID, rule.id, None)
        assert service.list_allowed(DEFAULT_WORKSPACE_ID) == []


def test_a_user_request_without_an_address_cannot_turn_an_allow_list_on(app: Flask) -> None:
    owner = app.extensions["test_owner"]
    user = Principal(kind=PrincipalKind.USER, user_id=owner.id, subject=f"user:{owner.id}")
    with app.app_context():
        with pytest.raises(IpListLockout):
            service_as(app, user).allow(DEFAULT_WORKSPACE_ID, {"network": "0.0.0.0/0"}, None)
        assert service_as(app, SYSTEM).list_allowed(DEFAULT_WORKSPACE_ID) == []


# --- The deny list through HTTP ------------------------------------------------------------------


def platform_admin_client(app: Flask) -> FlaskClient:
    """A platform administrator's client (one per app)."""
    found: FlaskClient | None = app.extensions.get("test_platform_admin")
    if found is None:
        admin = add_user(app, "platform@example.com", platform_admin=True)
        found = app.extensions["test_platform_admin"] = app.test_client(token=admin.token)
    return found


def deny(app: Flask, network: str = "203.0.113.0/24") -> dict[str, Any]:
    response = platform_admin_client(app).post(DENY, json={"network": network, "note": "abuse"})
    assert response.status_code == 201, response.json
    return response.json


def test_the_deny_hook_runs_before_every_other_hook(any_app: Flask) -> None:
    hooks = any_app.before_request_funcs[None]
    assert hooks[0].__name__ == "refuse_denied_addresses"
    assert sum(hook.__name__ == "refuse_denied_addresses" for hook in hooks) == 1


def test_a_denied_address_gets_403_everywhere_even_before_authentication(any_app: Flask) -> None:
    deny(any_app)
    owner = any_app.test_client()
    anonymous = any_app.test_client(token="")
    bad_token = any_app.test_client(token="not-a-token")
    denied = from_address(DENIED)
    for client, method, path in [
        (anonymous, "GET", "/health/live"),
        (anonymous, "GET", "/health/ready"),
        (anonymous, "GET", "/swagger.json"),
        (anonymous, "GET", "/problems"),
        (anonymous, "POST", "/api/v2/auth/login"),
        (anonymous, "GET", TASKS),  # would be 401
        (bad_token, "GET", TASKS),  # would be 401
        (owner, "GET", TASKS),  # a valid token: still refused
        (owner, "GET", "/api/v1/tasks"),
        (owner, "GET", "/api/v9/tasks"),  # would be an unsupported version
        (owner, "DELETE", "/health/live"),  # would be 405
        (anonymous, "GET", "/no/such/path"),  # would be 404
        (owner, "OPTIONS", TASKS),
        (owner, "GET", DENY),  # the admin gate's 404 comes after
    ]:
        response = client.open(path, method=method, **denied)
        body = assert_problem(response, 403)
        assert body["type"] == "/problems/address-denied", (method, path)
        assert DENIED not in response.get_data(as_text=True)  # nothing about the rule
        assert "RateLimit-Limit" not in response.headers  # not even counted
    assert owner.get(TASKS, **from_address(ALLOWED)).status_code == 200
    assert owner.get(TASKS).status_code == 200


def test_a_preflight_from_a_denied_address_is_refused_too() -> None:
    app = make_app(CORS_ORIGINS="https://app.example.com")
    deny(app)
    headers = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
    response = app.test_client(token="").options(TASKS, **from_address(DENIED, **headers))
    assert response.status_code == 403
    allowed = app.test_client(token="").options(TASKS, **from_address(ALLOWED, **headers))
    assert allowed.status_code == 204


def test_an_ipv4_mapped_client_address_is_denied_by_an_ipv4_rule(app: Flask) -> None:
    deny(app)
    response = app.test_client().get(TASKS, **from_address(f"::ffff:{DENIED}"))
    assert response.status_code == 403


def test_a_spoofed_forwarded_for_does_not_get_around_the_deny_list_without_proxies() -> None:
    app = make_app(TRUSTED_PROXIES=0)
    deny(app)
    client = app.test_client()
    # The connection is what counts; X-Forwarded-For is ignored.
    spoofed = client.get(TASKS, **from_address(DENIED, **{"X-Forwarded-For": ALLOWED}))
    assert spoofed.status_code == 403
    framed = client.get(TASKS, **from_address(ALLOWED, **{"X-Forwarded-For": DENIED}))
    assert framed.status_code == 200


def test_behind_one_proxy_only_the_entry_the_proxy_wrote_counts_for_the_deny_list() -> None:
    app = make_app(TRUSTED_PROXIES=1)
    deny(app)
    client = app.test_client()
    # The client wrote the first entry; the proxy appended the address it saw.
    spoofed = from_address(PROXY, **{"X-Forwarded-For": f"{ALLOWED}, {DENIED}"})
    assert client.get(TASKS, **spoofed).status_code == 403
    honest = from_address(PROXY, **{"X-Forwarded-For": f"{DENIED}, {ALLOWED}"})
    assert client.get(TASKS, **honest).status_code == 200
    # The proxy's own requests (its health checks) are judged by its own address.
    assert client.get("/health/live", **from_address(PROXY)).status_code == 200


def test_a_change_reaches_another_worker_within_the_refresh_interval(app: Flask) -> None:
    """A second app on the same databases stands for another worker process."""
    config = {key: app.config[key] for key in ("DATABASE_URL", "SHARD_URLS")}
    other = create_app({"APP_ENV": "testing", **config})
    try:
        clock = FakeClock()
        deny_list_of(other).clock = clock
        client = other.test_client()
        assert client.get("/health/live", **from_address(DENIED)).status_code == 200
        rule = deny(app)  # on the first worker: it applies it at once
        assert app.test_client().get("/health/live", **from_address(DENIED)).status_code == 403
        clock.now += IP_RULES_REFRESH - 0.01
        assert client.get("/health/live", **from_address(DENIED)).status_code == 200
        clock.now += 0.01
        assert client.get("/health/live", **from_address(DENIED)).status_code == 403
        removed = platform_admin_client(app).delete(f"{DENY}/{rule['id']}")
        assert removed.status_code == 204
        assert app.test_client().get("/health/live", **from_address(DENIED)).status_code == 200
        clock.now += 1.0
        assert client.get("/health/live", **from_address(DENIED)).status_code == 403
        clock.now += IP_RULES_REFRESH
        assert client.get("/health/live", **from_address(DENIED)).status_code == 200
    finally:
        other.extensions["shards"].dispose()


def test_the_deny_list_endpoints_exist_for_platform_administrators_only(app: Flask) -> None:
    rule = deny(app)
    key = app.test_client().post(f"{DEFAULT}/api-keys", json={"name": "k", "scopes": ["read"]})
    callers = {
        "owner": app.test_client(),
        "key": app.test_client(token=key.json["key"]),
    }
    for name, client in callers.items():
        for method, path, body in [
            ("GET", DENY, None),
            ("POST", DENY, {"network": "192.0.2.0/24"}),
            ("DELETE", f"{DENY}/{rule['id']}", None),
            ("GET", f"{DENY}?unknown=1", None),
        ]:
            response = client.open(path, method=method, json=body)
            assert response.status_code == 404, (name, method, path)
            assert response.json["type"] == "about:blank"  # as an unknown URL
    anonymous = app.test_client(token="").get(DENY)
    assert anonymous.status_code == 401
    assert [item["id"] for item in platform_admin_client(app).get(DENY).json["items"]] == [
        rule["id"]
    ]


def test_platform_administrators_list_add_and_remove_deny_rules(app: Flask) -> None:
    admin = platform_admin_client(app)
    assert admin.get(DENY).json == {"items": []}
    created = admin.post(DENY, json={"network": "2001:DB8:0::/32", "note": " abuse "})
    assert created.status_code == 201
    assert created.headers["Location"] == f"{DENY}/{created.json['id']}"
    assert created.json["network"] == "2001:db8::/32"
    assert created.json["note"] == "abuse"
    second = admin.post(DENY, json={"network": "203.0.113.0/24"}).json
    listed = admin.get(DENY)
    assert listed.headers["Cache-Control"] == "no-store"
    assert [item["network"] for item in listed.json["items"]] == ["2001:db8::/32", "203.0.113.0/24"]
    assert admin.delete(f"{DENY}/{second['id']}").status_code == 204
    missing = admin.delete(f"{DENY}/{second['id']}")
    assert assert_problem(missing, 404)["type"] == "/problems/ip-rule-not-found"
    assert [item["id"] for item in admin.get(DENY).json["items"]] == [created.json["id"]]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"network": "10.0.0.5/8"}, "#/network"),
        ({"network": "0.0.0.0/0"}, "#/network"),
        ({"network": "::/0"}, "#/network"),
        ({"network": "fe80::1%eth0"}, "#/network"),
        ({"network": "１.２.３.４"}, "#/network"),
        ({}, "#/network"),
        ({"network": "192.0.2.0/24", "note": "x" * 201}, "#/note"),
        ({"network": "192.0.2.0/24", "note": "a\nb"}, "#/note"),
        ({"network": "192.0.2.0/24", "admin": True}, "#/admin"),
    ],
)
def test_invalid_deny_rules_are_422(app: Flask, body: dict[str, Any], pointer: str) -> None:
    response = platform_admin_client(app).post(DENY, json=body)
    problem = assert_problem(response, 422)
    assert problem["type"] == "/problems/validation-error"
    assert pointer in [error["pointer"] for error in problem["errors"]]


def test_a_deny_rule_may_not_cover_the_administrators_own_address(app: Flask) -> None:
    admin = platform_admin_client(app)
    for network in ("127.0.0.0/8", TEST_CLIENT_ADDRESS, f"::ffff:{TEST_CLIENT_ADDRESS}"):
        response = admin.post(DENY, json={"network": network})
        assert assert_problem(response, 422)["type"] == "/problems/ip-list-lockout"
    assert admin.get(DENY).json["items"] == []
    behind = admin.post(DENY, json={"network": "198.51.100.0/24"}, **from_address(ALLOWED))
    assert behind.status_code == 422


def test_a_duplicate_deny_rule_is_409_however_it_is_spelt(app: Flask) -> None:
    admin = platform_admin_client(app)
    assert admin.post(DENY, json={"network": "2001:db8::/32"}).status_code == 201
    again = admin.post(DENY, json={"network": "2001:0DB8:0000::/32"})
    assert assert_problem(again, 409)["type"] == "/problems/ip-rule-exists"


def test_the_deny_list_is_bounded(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ip_rules_module, "MAX_DENY_RULES", 2)
    admin = platform_admin_client(app)
    for network in ("192.0.2.0/24", "198.51.100.0/24"):
        assert admin.post(DENY, json={"network": network}).status_code == 201
    full = admin.post(DENY, json={"network": "203.0.113.0/24"})
    assert assert_problem(full, 409)["type"] == "/problems/too-many-ip-rules"


def test_deny_list_changes_are_audited_in_the_global_chain(app: Flask) -> None:
    admin_user = add_user(app, "auditor@example.com", platform_admin=True)
    admin = app.test_client(token=admin_user.token)
    rule = admin.post(DENY, json={"network": "203.0.113.0/24", "note": "abuse"}).json
    assert admin.delete(f"{DENY}/{rule['id']}").status_code == 204
    admin.post(DENY, json={"network": "0.0.0.0/0"})  # refused: no event
    with control_engine(app).connect() as connection:
        events = connection.execute(
            select(AuditEventRow)
            .where(AuditEventRow.entity_type == "ip_rule")
            .order_by(AuditEventRow.sequence)
        ).all()
    assert [e.action for e in events] == ["ip_deny_rule.added", "ip_deny_rule.removed"]
    assert {e.workspace_id for e in events} == {None}
    assert {e.actor for e in events} == {f"user:{admin_user.id}"}
    assert {e.entity_id for e in events} == {rule["id"]}
    assert {e.client_ip for e in events} == {TEST_CLIENT_ADDRESS}
    assert events[0].changes["network"] == {"before": None, "after": "203.0.113.0/24"}
    assert events[1].changes["network"] == {"before": "203.0.113.0/24", "after": None}


# --- The allow lists through HTTP ----------------------------------------------------------------


def allow(client: FlaskClient, network: str, url: str = ALLOW, **kwargs: Any) -> dict[str, Any]:
    response = client.post(url, json={"network": network}, **kwargs)
    assert response.status_code == 201, response.json
    return response.json


def test_owners_and_admins_manage_the_allow_list_and_nobody_else(app: Flask) -> None:
    users: dict[str, auth.TestUser] = {
        role: add_member(app, DEFAULT_WORKSPACE_ID, role, f"{role}@example.com")
        for role in ("admin", "member", "viewer")
    }
    outsider = add_user(app, "outsider@example.com")
    key = app.test_client().post(f"{DEFAULT}/api-keys", json={"name": "k", "scopes": ["read"]})
    write_key = app.test_client().post(
        f"{DEFAULT}/api-keys", json={"name": "w", "scopes": ["read", "write"]}
    )
    admin = app.test_client(token=users["admin"].token)
    rule = allow(admin, "127.0.0.0/8")
    refused = {
        "member": (users["member"].token, 403),
        "viewer": (users["viewer"].token, 403),
        "read key": (key.json["key"], 403),
        "write key": (write_key.json["key"], 403),
        "outsider": (outsider.token, 404),
    }
    for name, (token, status) in refused.items():
        client = app.test_client(token=token)
        for method, path, body in [
            ("GET", ALLOW, None),
            ("POST", ALLOW, {"network": "192.0.2.0/24"}),
            ("DELETE", f"{ALLOW}/{rule['id']}", None),
        ]:
            response = client.open(path, method=method, json=body)
            assert response.status_code == status, (name, method)
    assert app.test_client(token="").get(ALLOW).status_code == 401
    assert [item["id"] for item in app.test_client().get(ALLOW).json["items"]] == [rule["id"]]


def test_the_first_allow_rule_must_contain_the_callers_own_address(app: Flask) -> None:
    owner = app.test_client()
    response = owner.post(ALLOW, json={"network": "198.51.100.0/24"})
    problem = assert_problem(response, 422)
    assert problem["type"] == "/problems/ip-list-lockout"
    assert TEST_CLIENT_ADDRESS in problem["detail"]  # the caller's own address, to add
    assert owner.get(ALLOW).json["items"] == []
    assert owner.get(TASKS, **from_address(DENIED)).status_code == 200  # the list stayed off
    first = allow(owner, "198.51.100.0/24", **from_address(ALLOWED))
    assert first["network"] == "198.51.100.0/24"
    assert first["created_by"] == str(app.extensions["test_owner"].id)


def test_removing_a_rule_must_leave_the_caller_allowed_and_the_last_turns_the_list_off(
    app: Flask,
) -> None:
    owner = app.test_client()
    mine = allow(owner, TEST_CLIENT_ADDRESS)
    theirs = allow(owner, "198.51.100.0/24")
    locked_out = owner.delete(f"{ALLOW}/{mine['id']}")
    assert assert_problem(locked_out, 422)["type"] == "/problems/ip-list-lockout"
    assert owner.delete(f"{ALLOW}/{theirs['id']}").status_code == 204
    assert owner.delete(f"{ALLOW}/{mine['id']}").status_code == 204  # the last: list off
    assert owner.get(ALLOW).json["items"] == []
    assert owner.get(TASKS, **from_address(DENIED)).status_code == 200
    missing = owner.delete(f"{ALLOW}/{mine['id']}")
    assert assert_problem(missing, 404)["type"] == "/problems/ip-rule-not-found"


def test_allow_rules_of_another_workspace_are_not_found(app: Flask) -> None:
    owner = app.test_client()
    other = owner.post(WORKSPACES, json={"name": "other"}).json["id"]
    rule = allow(owner, "127.0.0.0/8", url=f"{WORKSPACES}/{other}/ip-allow-list")
    response = owner.delete(f"{ALLOW}/{rule['id']}")
    assert assert_problem(response, 404)["type"] == "/problems/ip-rule-not-found"
    assert owner.get(ALLOW).json["items"] == []
    missing = owner.get(f"{WORKSPACES}/{uuid.UUID(int=1)}/ip-allow-list")
    assert assert_problem(missing, 404)["type"] == "/problems/workspace-not-found"


def test_duplicate_invalid_and_too_many_allow_rules(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = app.test_client()
    allow(owner, "127.0.0.0/8")
    again = owner.post(ALLOW, json={"network": "127.0.0.0/08"})
    assert assert_problem(again, 409)["type"] == "/problems/ip-rule-exists"
    invalid = owner.post(ALLOW, json={"network": "127.0.0.1/8", "colour": "red"})
    pointers = {e["pointer"] for e in assert_problem(invalid, 422)["errors"]}
    assert pointers == {"#/network", "#/colour"}
    assert allow(owner, "0.0.0.0/0")["network"] == "0.0.0.0/0"  # broad is fine to allow
    monkeypatch.setattr(ip_rules_module, "MAX_ALLOW_RULES", 2)
    full = owner.post(ALLOW, json={"network": "192.0.2.0/24"})
    assert assert_problem(full, 409)["type"] == "/problems/too-many-ip-rules"


def test_allow_list_changes_are_audited_in_the_workspaces_chain(app: Flask) -> None:
    owner = app.test_client()
    rule = allow(owner, "127.0.0.0/8")
    assert owner.delete(f"{ALLOW}/{rule['id']}").status_code == 204
    response = owner.get(f"{DEFAULT}/audit", query_string={"limit": 100})
    events = [e for e in response.json["items"] if e["entity_type"] == "ip_rule"]
    assert sorted(e["action"] for e in events) == ["ip_allow_rule.added", "ip_allow_rule.removed"]
    assert {e["actor"] for e in events} == {f"user:{app.extensions['test_owner'].id}"}
    assert {e["entity_id"] for e in events} == {rule["id"]}


# --- The allow list enforced (WorkspaceService.access) -------------------------------------------


def allow_list_on(app: Flask) -> FlaskClient:
    """The default workspace allows 198.51.100.0/24 only; its owner's client."""
    owner = app.test_client()
    allow(owner, "198.51.100.0/24", **from_address(ALLOWED))
    return owner


def test_an_allow_list_refuses_every_other_address_in_its_workspace_only(app: Flask) -> None:
    owner = allow_list_on(app)
    other = owner.post(WORKSPACES, json={"name": "elsewhere"}, **from_address(DENIED))
    assert other.status_code == 201
    key = owner.post(
        f"{DEFAULT}/api-keys", json={"name": "k", "scopes": ["read"]}, **from_address(ALLOWED)
    ).json["key"]
    for client in (owner, app.test_client(token=key)):
        assert client.get(TASKS, **from_address(ALLOWED)).status_code == 200
        assert client.get(TASKS, **from_address(f"::ffff:{ALLOWED}")).status_code == 200
        refused = client.get(TASKS, **from_address(DENIED))
        assert assert_problem(refused, 403)["type"] == "/problems/address-not-allowed"
        assert client.get("/api/v1/tasks", **from_address(DENIED)).status_code == 403
    assert owner.get(ALLOW, **from_address(DENIED)).status_code == 403  # the list itself too
    elsewhere = f"{WORKSPACES}/{other.json['id']}/tasks"
    assert owner.get(elsewhere, **from_address(DENIED)).status_code == 200


def test_an_outsider_gets_404_not_403_from_a_disallowed_address(app: Flask) -> None:
    allow_list_on(app)
    outsider = app.test_client(token=add_user(app, "outsider@example.com").token)
    response = outsider.get(TASKS, **from_address(DENIED))
    assert assert_problem(response, 404)["type"] == "/problems/workspace-not-found"


def workspace_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation on one workspace: under /api/v2/workspaces/{id}/ and API v1's."""
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
        and path.startswith((f"{WORKSPACES}/{{workspace_id}}", "/api/v1/"))
        and not path.startswith("/api/v1/hello")
    ]


def test_every_operation_on_the_workspace_is_refused_from_outside_its_allow_list(
    app: Flask,
) -> None:
    """Found in the spec, so an operation added tomorrow is checked too. The owner, from an
    address outside the list, with the spec's example body: refused before anything happens
    (the ids need not exist: the address is checked before any lookup)."""
    owner = allow_list_on(app)
    spec = owner.get("/swagger.json").json
    operations = workspace_operations(spec)
    assert len(operations) > 20  # the tasks, members, keys, audit, export... of both versions
    for method, path, operation in operations:
        url = path.replace("{workspace_id}", str(DEFAULT_WORKSPACE_ID))
        url = re.sub(r"\{\w+\}", lambda _: str(uuid.uuid4()), url)
        response = owner.open(
            url, method=method.upper(), json=example_body(operation, spec), **from_address(DENIED)
        )
        response.close()  # an export streams a file
        assert response.status_code == 403, (method, path, response.status_code)
        assert response.json["type"] == "/problems/address-not-allowed", (method, path)
    assert owner.get(DEFAULT, **from_address(ALLOWED)).status_code == 200  # not deleted


def test_a_spoofed_forwarded_for_does_not_get_around_an_allow_list_without_proxies() -> None:
    app = make_app(TRUSTED_PROXIES=0)
    owner = allow_list_on(app)
    spoofed = owner.get(TASKS, **from_address(DENIED, **{"X-Forwarded-For": ALLOWED}))
    assert assert_problem(spoofed, 403)["type"] == "/problems/address-not-allowed"


def test_behind_one_proxy_only_the_entry_the_proxy_wrote_counts_for_an_allow_list() -> None:
    app = make_app(TRUSTED_PROXIES=1)
    owner = app.test_client()
    allow(owner, "198.51.100.0/24", **from_address(PROXY, **{"X-Forwarded-For": ALLOWED}))
    spoofed = from_address(PROXY, **{"X-Forwarded-For": f"{ALLOWED}, {DENIED}"})
    assert owner.get(TASKS, **spoofed).status_code == 403
    honest = from_address(PROXY, **{"X-Forwarded-For": f"{DENIED}, {ALLOWED}"})
    assert owner.get(TASKS, **honest).status_code == 200
    # Without the header the proxy's own address is judged, and it is not on the list.
    assert owner.get(TASKS, **from_address(PROXY)).status_code == 403
