"""A Postman Collection (v2.1) generated from the Swagger 2.0 spec, so it never drifts from the API.

``postman_collection(spec, base_url)`` is a pure function of the spec that ``/swagger.json`` serves,
and it is also a test suite (run by Newman: ``scripts/newman``):

* One folder per tag, one request per operation, with example path variables, query parameters
  (disabled unless required), header parameters (likewise) and JSON bodies taken from the spec's
  examples. Each request has a test script asserting the operation's documented success status,
  the Content-Type, the documented response headers and the members of the response model; a
  deprecated operation's also asserts the ``Deprecation`` header (RFC 9745).
* Resources are chained: when ``POST /things`` answers 201 with an ``id`` (or a member named like
  the path parameter: ``user_id``) and ``/things/{thing_id}`` exists, that is a chain, and
  ``thing_id`` a collection variable (initially the spec's example id) that every request under
  ``/things/{thing_id}`` uses, nested paths included. The POST's script stores the created id in
  it, so the requests after it work on what the run created; the DELETE (which runs last in its
  folder) puts the example id back. Two chains with the same path
  parameter get distinct variables: a deprecated one is qualified by its path (``v1_task_id``).
* Nothing is ever deleted that the run did not create: every DELETE of a chained resource has a
  pre-request script that skips it while its variable is empty or still the example id (a seeded
  resource, such as the default workspace).
* A folder that works under a resource it does not create itself (tasks under a workspace) gets a
  setup request creating one and a teardown request deleting it, with everything in it, at the end:
  each folder runs alone (``newman --folder tasks``) as well as in the whole collection, never
  touches seeded data, and leaves nothing behind.
* Secured operations (an operation's ``security``, or the spec's default when it has none,
  naming apiKey schemes of ``securityDefinitions``; ``security: []`` is public) send their
  credential from a collection variable named after the scheme: ``Authorization: Bearer
  {{bearer}}``. A pre-request script skips them while it is empty. An action replacing the
  server's data (``POST .../restore``, ``OPT_IN_ACTIONS``) runs only when its variable
  (``allow_restore``) is ``true``; an upload (a ``formData`` file) only once someone has chosen
  the file.
* Logging in, when the spec has a log-in operation (a public POST taking ``email`` and
  ``password`` whose success answers an ``access_token``) and a bearer scheme: a first "Log in"
  folder sends it with ``{{email}}`` and ``{{password}}`` (collection variables; by default the
  development demo account) and stores the access token in the scheme's variable, when it
  expires (``bearer_expires_at``) and the refresh token. Every folder with secured requests
  starts with a copy, ``setup: Log in``, skipped while the variable holds a token valid for
  another minute, so a folder runs alone as well. Bodies that carry a password are the run's
  account: ``password``, ``current_password`` and ``new_password`` are ``{{password}}`` (a
  password change sets the same one again), ``email`` is ``{{email}}``, except on sign-up (a
  public POST answering 201), a new address each run, which its answer stores in
  ``signup_email``: a secured body naming another account by ``email`` (adding a member) names
  that one, and a folder with such a request signs one up first while there is none. A
  ``refresh_token`` member is ``{{refresh_token}}``; ``ONE_TIME_MEMBERS`` (an authenticator's
  code) are variables only a person can fill in; a request sending one of these waits for it.
  A request ending the session (``SESSION_ENDING_ACTIONS``: log out, restore) runs last in its
  folder but for the deletes, clears the token, and "Log in again" follows it.
* A "Workflow" folder per chain of the current (not deprecated) API: create, get, conditional get
  (If-None-Match: 304), patch with If-Match from the stored ETag, the same patch with the stale
  ETag (412), the item's other reads (a history, a download), delete, get (404; the item again
  after a soft delete, ``SOFT_DELETE``: a revoked key); each step that
  the spec documents, chained through collection variables; chains needing a credential last
  (without one, the rest of the story still runs).
  A resource that others nest under is created first, their workflows run inside it, then it is
  deleted and read again (404).

``collection_plan(spec)`` is the same thing as data (requests plus ``Expect`` objects), which the
test suite replays in-process. ``flask --app wsgi export-postman`` (app/cli.py) writes it out.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from flask import Flask

from app.auth.accounts import DEMO_EMAIL, DEMO_PASSWORD

POSTMAN_SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
BASE_URL_VARIABLE = "baseUrl"
DEFAULT_BASE_URL = "http://127.0.0.1:5000"
WORKFLOW_FOLDER = "Workflow"
SETUP_PREFIX = "setup: "
TEARDOWN_PREFIX = "teardown: "
LOGIN_FOLDER = "Log in"
LOGIN_STEP = "Log in"  # the first folder's request; a folder's copy is SETUP_PREFIX + LOGIN_STEP
RELOGIN_STEP = "Log in again"  # after a request that ended the session
# The account a run logs in with, and the tokens it keeps (collection variables).
EMAIL_VARIABLE = "email"
PASSWORD_VARIABLE = "password"
REFRESH_VARIABLE = "refresh_token"
EXPIRY_SUFFIX = "_expires_at"  # bearer -> bearer_expires_at: milliseconds since the epoch
# A folder's setup logs in again when the token has less than this left: no request of a short
# run then meets an expired token.
RENEW_MARGIN_SECONDS = 60
# RFC 6749 section 5.1: what a successful token response has (the log-in's other answer, a
# second-factor challenge, has none of it, and the run cannot answer one).
TOKEN_MEMBERS = ("access_token", "token_type", "expires_in", "refresh_token")
PASSWORD_MEMBERS = frozenset({"password", "current_password", "new_password"})
# A sign-up's address: new on every run (Postman's dynamic variable), recognisable afterwards.
SIGN_UP_EMAIL = "postman-{{$guid}}@example.com"
# Body members only a person can fill in (a code from an authenticator app, the ticket of a
# log-in with a second factor): collection variables, empty by default, that their requests wait
# for, so a run skips them and someone can send them by hand.
ONE_TIME_MEMBERS = {"code": "totp_code", "mfa_token": "mfa_token"}
# The address of the account the last sign-up made: a body naming another account by ``email``
# (adding a member) names that one.
SIGNUP_VARIABLE = "signup_email"
# POST actions (the last path segment) that end the caller's session: they run last in their
# folder but for its deletes, and the run logs in again after each. A restore ends every
# session (restored tables would otherwise revive sessions ended since the backup).
SESSION_ENDING_ACTIONS = frozenset({"logout", "logout-everywhere", "restore"})
# A DELETE that marks the item instead of removing it (an API key's revocation): read again
# afterwards, the item answers as before, not 404. Said by this vendor extension on the DELETE,
# or by a member of the item's model recording when that happened.
SOFT_DELETE = "x-soft-delete"
SOFT_DELETE_MEMBERS = frozenset({"revoked_at", "deleted_at"})
# Error responses documented with an RFC 9457 model (type, title, status) use this media type.
PROBLEM_MEDIA_TYPE = "application/problem+json"
_PROBLEM_MEMBERS = ("type", "title", "status")
# What every response of a deprecated operation carries (RFC 9745).
DEPRECATION_HEADER = "Deprecation"

# Swagger 2.0 path-item keys that are operations, in the order Postman shows them.
_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
_CONDITIONAL = re.compile(r"\b(when|if|unless|only)\b", re.IGNORECASE)
_PATH_TEMPLATE = re.compile(r"\{([^}/]+)\}")
_VARIABLE_REFERENCE = re.compile(r"\{\{(?P<name>[^{}$]+)\}\}")  # a collection variable's
_ITEM_PATH = re.compile(r"^(?P<collection>.+)/\{(?P<name>[^}/]+)\}$")
# Actions (the last segment of a POST path) that replace the server's data: a run sends them only
# when the named collection variable is "true", so running the collection never rewinds a
# developer's data by default.
OPT_IN_ACTIONS = {"restore": "allow_restore"}
# Placeholders for values the spec gives no example for; only disabled parameters and
# optional fields use them in practice (every field our models require has an example).
_FORMAT_SAMPLES = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "uuid": str(uuid.UUID(int=0)),
}


@dataclass(frozen=True)
class Var:
    """The current value of a collection variable."""

    name: str


@dataclass(frozen=True)
class Save:
    """After the expected status: set collection variable ``variable`` from the response."""

    variable: str
    # a body member, a header, a fixed value, or now plus the seconds in a body member (in
    # milliseconds since the epoch: when a token expires)
    source: Literal["body", "header", "value", "expiry"]
    key: str  # the member's or header's name, or the value itself


@dataclass(frozen=True)
class Guard:
    """Skip the request (pre-request script) unless ``variable`` allows it. ``kind`` says how:

    * ``"id"``: the variable holds an id this run created, neither empty nor one of ``refused``
      (a DELETE never targets what the run did not create);
    * ``"credential"``: the variable is not empty (a secured operation needs its credential);
    * ``"opt-in"``: the variable is ``"true"`` (an action replacing the server's data);
    * ``"file"``: a file is chosen for the form field ``variable`` (an upload);
    * ``"login"``: the variable holds no token, or one that expires (``variable`` +
      ``EXPIRY_SUFFIX``) within ``RENEW_MARGIN_SECONDS`` (a token with no recorded expiry was
      set by hand, and is kept);
    * ``"unset"``: the variable is empty (a setup making what another run may have made).
    """

    variable: str
    refused: tuple[str, ...] = ()
    kind: Literal["id", "credential", "opt-in", "file", "login", "unset"] = "id"


@dataclass(frozen=True)
class Expect:
    """What a request's test script asserts (and what the in-process replay checks)."""

    status: int | None  # None: any 2xx (the spec documents no success status)
    media_type: str | None = None  # the Content-Type's media type, when a body is documented
    empty: bool = False  # no body at all (204, 304)
    headers: tuple[str, ...] = ()  # response headers that must be present
    keys: tuple[str, ...] = ()  # members a JSON object body must have
    array: bool = False  # the body is a JSON array
    equal: tuple[tuple[str, Any], ...] = ()  # body member == value (or Var)
    header_equal: tuple[tuple[str, Var], ...] = ()
    header_differ: tuple[tuple[str, Var], ...] = ()
    save: tuple[Save, ...] = ()
    nonempty: bool = False  # a body of some bytes (a file download: no JSON to look into)


@dataclass(frozen=True)
class Step:
    name: str
    request: dict[str, Any]
    expect: Expect
    guards: tuple[Guard, ...] = ()  # all must allow the request, else it is skipped


@dataclass
class Folder:
    name: str
    description: str
    steps: list[Step] = field(default_factory=list)


@dataclass
class Plan:
    folders: list[Folder]
    variables: dict[str, str]  # collection variables besides baseUrl, with initial values
    descriptions: dict[str, str] = field(default_factory=dict)  # variable -> what it is for


@dataclass(frozen=True)
class _Credential:
    """What a secured operation sends: an apiKey scheme of ``securityDefinitions``."""

    variable: str  # the collection variable holding it, named after the scheme
    location: Literal["header", "query"]
    name: str  # the header's or query parameter's name
    value: str  # ``{{variable}}``; ``Bearer {{variable}}`` in an Authorization header
    description: str


@dataclass
class _Operation:
    path: str  # the spec's path, with basePath
    method: str
    operation: Mapping[str, Any]
    request: dict[str, Any]
    name: str
    credentials: tuple[_Credential, ...] = ()

    @property
    def responses(self) -> Mapping[str, Any]:
        return self.operation.get("responses", {})

    @property
    def deprecated(self) -> bool:
        return bool(self.operation.get("deprecated"))

    def documents_header(self, name: str) -> bool:
        return any(h["key"] == name for h in self.request["header"])


@dataclass(frozen=True)
class _Account:
    """How a run logs in: ``login`` answers the token that secured requests send from
    ``token`` (the bearer scheme's variable)."""

    login: _Operation
    token: str

    @property
    def expiry(self) -> str:
        return self.token + EXPIRY_SUFFIX


@dataclass
class _Chain:
    """``POST collection`` creates items addressed by ``item_path`` (``collection/{param}``)."""

    param: str  # the path parameter naming an item
    variable: str  # the collection variable holding the current item's id
    example: str
    create: _Operation
    item: dict[str, _Operation]  # method -> operation on item_path
    parent: _Chain | None = None  # the chain whose item path ``create`` is nested under
    key: str = "id"  # the member of the create's answer holding the new item's id

    @property
    def item_path(self) -> str:
        return f"{self.create.path}/{{{self.param}}}"

    def covers(self, path: str) -> bool:
        """Whether ``path`` names an item of this chain or something nested under one."""
        return path == self.item_path or path.startswith(self.item_path + "/")


def app_spec(app: Flask) -> dict[str, Any]:
    """The spec ``/swagger.json`` serves (RESTX needs a request context to build it)."""
    with app.test_request_context():
        spec = app.extensions["api"].__schema__
    if "paths" not in spec:  # RESTX returns {"error": ...} and logs the traceback
        raise RuntimeError(f"the API spec could not be built: {spec.get('error', spec)}")
    return spec


def postman_collection(
    spec: Mapping[str, Any],
    base_url: str = DEFAULT_BASE_URL,
    *,
    email: str = DEMO_EMAIL,
    password: str = DEMO_PASSWORD,
) -> dict[str, Any]:
    """Turn a Swagger 2.0 spec into a Postman Collection v2.1 document (a JSON-ready dict).
    ``email`` and ``password``: the initial values of the account variables (when the spec has a
    log-in); the development demo account by default."""
    info = spec.get("info", {})
    title = info.get("title", "API")
    plan = collection_plan(spec, email=email, password=password)
    description = (info.get("description") or "").strip()
    variables = {BASE_URL_VARIABLE: base_url.rstrip("/"), **plan.variables}
    access = "".join(f"\n\n`{name}`: {text}" for name, text in plan.descriptions.items())
    login = (
        f' The "{LOGIN_FOLDER}" folder logs in first, and every folder with secured requests'
        " logs in by itself when it runs alone."
        if plan.folders and plan.folders[0].name == LOGIN_FOLDER
        else ""
    )
    return {
        "info": {
            # Stable id: re-importing offers to replace the collection instead of duplicating it.
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"postman:{title}")),
            "name": title,
            "description": f"{description}\n\nGenerated from the API's Swagger spec "
            f"(API version {info.get('version', '?')}). Set the `{BASE_URL_VARIABLE}` "
            "collection variable to the server you test. Every request has a test script; "
            f"run the whole collection (Runner, or Newman) against a development server.{login}"
            f"{access}",
            "version": str(info.get("version", "")),
            "schema": POSTMAN_SCHEMA,
        },
        "item": [
            {
                "name": folder.name,
                "description": folder.description,
                "item": [_render(step) for step in folder.steps],
            }
            for folder in plan.folders
        ],
        "variable": [
            {"key": key, "value": value, "type": "string"}
            | ({"description": plan.descriptions[key]} if key in plan.descriptions else {})
            for key, value in variables.items()
        ],
    }


def collection_plan(
    spec: Mapping[str, Any], *, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD
) -> Plan:
    """The collection as data: folders of requests, each with what its test script asserts."""
    definitions = spec.get("definitions", {})
    base_path = spec.get("basePath", "/").rstrip("/")
    operations: list[_Operation] = []
    for path, path_item in spec.get("paths", {}).items():
        shared = path_item.get("parameters", [])
        for method in _METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            parameters = _merged_parameters(shared, operation.get("parameters", []))
            credentials = _credentials(spec, operation)
            request = _request(
                spec, base_path + path, method, operation, parameters, definitions, credentials
            )
            name = operation.get("summary") or operation.get("operationId")
            name = name or f"{method.upper()} {base_path + path}"
            operations.append(
                _Operation(base_path + path, method, operation, request, name, credentials)
            )

    account = _account(spec, operations)
    if account is not None:
        for op in operations:
            _use_account(spec, op)
    chains = _chains(spec, operations)
    access = {id(op): _access_guards(op) for op in operations}
    descriptions = _access_variables(spec, operations, access, account)
    variables = dict.fromkeys(descriptions, "")
    if account is not None:
        variables.update({EMAIL_VARIABLE: email, PASSWORD_VARIABLE: password})
    variables.update({chain.variable: chain.example for chain in chains})
    for op in operations:
        _bind(op.request, {c.param: c.variable for c in _chains_over(chains, op.path)})
    expects = {id(op): _success_expect(spec, op) for op in operations}
    if account is not None:
        for op in operations:
            expects[id(op)] = _account_expect(spec, op, account, expects[id(op)])
    guards: dict[int, tuple[Guard, ...]] = dict(access)
    for chain in chains:
        create = expects[id(chain.create)]
        expects[id(chain.create)] = replace(
            create, save=(*create.save, Save(chain.variable, "body", chain.key))
        )
        delete = chain.item.get("delete")
        if delete is not None:  # after the delete, point the variable at the example again
            expect = expects[id(delete)]
            saved = Save(chain.variable, "value", chain.example)
            expects[id(delete)] = replace(expect, save=(*expect.save, saved))
            guards[id(delete)] = (*access[id(delete)], Guard(chain.variable, (chain.example,)))

    def log_in(name: str) -> Step:
        """The log-in request: the first folder's always sent, the others only when the token is
        missing or about to expire."""
        assert account is not None
        guard = (Guard(account.token, kind="login"),) if name != LOGIN_STEP else ()
        return Step(name, copy.deepcopy(account.login.request), expects[id(account.login)], guard)

    folders: dict[str, Folder] = {
        tag["name"]: Folder(tag["name"], tag.get("description", "")) for tag in spec.get("tags", [])
    }
    # Creates first (a list then shows what the run made); deletes last (deepest path first), so
    # nothing after them needs what they removed; what ends the session just before them.
    creates = {id(chain.create) for chain in chains}
    ordered = sorted(
        operations,
        key=lambda op: (
            op.method == "delete",
            account is not None and _ends_session(op),
            -op.path.count("/") if op.method == "delete" else id(op) not in creates,
        ),
    )
    members: dict[str, list[_Operation]] = {}
    for op in ordered:
        tag = (op.operation.get("tags") or ["default"])[0]
        folder = folders.setdefault(tag, Folder(tag, ""))
        folder.steps.append(Step(op.name, op.request, expects[id(op)], guards[id(op)]))
        if account is not None and _ends_session(op):
            folder.steps.append(log_in(RELOGIN_STEP))
        members.setdefault(tag, []).append(op)
    for tag, ops in members.items():
        _own_parents(folders[tag], ops, chains, expects, guards)

    workflow = Folder(
        WORKFLOW_FOLDER,
        "Run in order (Runner or Newman): each step stores what the next one needs (the created "
        "ids, the ETags) in collection variables. It works only on what it created and deletes "
        "it at the end, so it can run again and again against the same server.",
    )
    # Those that need a credential last: without it they are skipped, the rest of the story runs.
    # Then in the order of the spec's tags (where the API is secured throughout: the main story,
    # workspaces, before the admin's).
    tag_order = {tag["name"]: index for index, tag in enumerate(spec.get("tags", []))}
    for chain in sorted(
        chains,
        key=lambda c: (
            bool(access[id(c.create)]),
            tag_order.get((c.create.operation.get("tags") or [""])[0], len(tag_order)),
        ),
    ):
        if chain.parent is None and not chain.create.deprecated:
            workflow.steps.extend(
                _workflow(spec, chain, chains, operations, expects, access, variables, {})
            )
    result = [workflow] if workflow.steps else []
    result += [folder for folder in folders.values() if folder.steps]
    if account is not None:
        signup = next((op for op in operations if _signs_up(spec, op)), None)
        sign_up = None
        if signup is not None:
            renew = (Guard(SIGNUP_VARIABLE, kind="unset"),)
            sign_up = Step(
                SETUP_PREFIX + signup.name,
                copy.deepcopy(signup.request),
                expects[id(signup)],
                renew,
            )
        result = _log_in_first(result, account, log_in, sign_up)
    return Plan(result, variables, descriptions)


def _log_in_first(
    folders: list[Folder],
    account: _Account,
    log_in: Callable[[str], Step],
    sign_up: Step | None,
) -> list[Folder]:
    """A first folder logging in; in front of every folder with secured requests, a log-in when
    the token is missing or expiring; in front of one that needs another account (``{{
    signup_email}}``), a sign-up while there is none."""
    for folder in folders:
        setup: list[Step] = []
        guards = [guard for step in folder.steps for guard in step.guards]
        if Guard(account.token, kind="credential") in guards:
            setup.append(log_in(SETUP_PREFIX + LOGIN_STEP))
            folder.description += (
                f"\n\nIts first request logs in (`{EMAIL_VARIABLE}`, `{PASSWORD_VARIABLE}`) "
                f"unless `{account.token}` holds a token valid for another minute: the folder "
                "runs alone too."
            )
        if (
            sign_up is not None
            and Guard(SIGNUP_VARIABLE, kind="credential") in guards
            and not any(step.request == sign_up.request for step in folder.steps)
        ):
            setup.append(copy.deepcopy(sign_up))
            folder.description += (
                "\n\nThen it signs up an account for its requests to work with, unless "
                f"`{SIGNUP_VARIABLE}` holds one already."
            )
        folder.steps[:0] = setup
        folder.description = folder.description.strip()
    first = Folder(
        LOGIN_FOLDER,
        f"Logs in with the `{EMAIL_VARIABLE}` and `{PASSWORD_VARIABLE}` collection variables and "
        f"stores the access token in `{account.token}`, which every secured request sends, when "
        f"it expires in `{account.expiry}`, and the refresh token in `{REFRESH_VARIABLE}`. Run it "
        "first (the whole collection does), or send it by hand before the requests you send by "
        "hand. The access token expires after a few minutes (`expires_in` in the answer): send "
        "it again then.",
        [log_in(LOGIN_STEP)],
    )
    return [first, *folders]


def _credentials(spec: Mapping[str, Any], operation: Mapping[str, Any]) -> tuple[_Credential, ...]:
    """What the operation's ``security`` (or the spec's default) asks to send: the first
    alternative made of apiKey schemes (Swagger 2.0 has no bearer scheme: an apiKey in the
    Authorization header is the usual stand-in, and it carries ``Bearer <token>``). Other scheme
    types (basic, oauth2) are left to Postman's Authorization tab: nothing is sent or guarded.
    ``security: []`` (no alternative) is a public operation."""
    schemes = spec.get("securityDefinitions", {})
    for requirement in operation.get("security", spec.get("security", [])):
        found = [(name, schemes.get(name, {})) for name in requirement]
        if found and all(
            s.get("type") == "apiKey" and s.get("in") in ("header", "query") for _, s in found
        ):
            return tuple(_credential(name, scheme) for name, scheme in found)
    return ()


def _credential(name: str, scheme: Mapping[str, Any]) -> _Credential:
    variable = re.sub(r"\W+", "_", name).strip("_") or "credential"
    bearer = scheme["in"] == "header" and scheme.get("name", "").lower() == "authorization"
    value = f"Bearer {{{{{variable}}}}}" if bearer else f"{{{{{variable}}}}}"
    description = (scheme.get("description") or f"The {name} credential").strip().rstrip(".")
    return _Credential(variable, scheme["in"], scheme.get("name", ""), value, description + ".")


# --- the account a run logs in with --------------------------------------------------------------


def _account(spec: Mapping[str, Any], operations: list[_Operation]) -> _Account | None:
    """The log-in operation and the bearer variable it fills, if the spec has both."""
    token = next(
        (
            c.variable
            for op in operations
            for c in op.credentials
            if c.location == "header" and c.value.startswith("Bearer ")
        ),
        None,
    )
    login = next(
        (
            op
            for op in operations
            if _issues_tokens(spec, op) and {"email", "password"} <= _body_members(spec, op).keys()
        ),
        None,
    )
    return _Account(login, token) if login is not None and token is not None else None


def _issues_tokens(spec: Mapping[str, Any], op: _Operation) -> bool:
    """A public POST whose success answers an access token (log in, refresh)."""
    return (
        op.method == "post" and not op.credentials and "access_token" in _success_members(spec, op)
    )


def _signs_up(spec: Mapping[str, Any], op: _Operation) -> bool:
    """A public POST taking an email and a password that creates (201) and logs nobody in."""
    return (
        op.method == "post"
        and not op.credentials
        and "201" in op.responses
        and {"email", "password"} <= _body_members(spec, op).keys()
        and not _issues_tokens(spec, op)
    )


def _ends_session(op: _Operation) -> bool:
    return (
        op.method == "post"
        and bool(op.credentials)
        and op.path.rsplit("/", 1)[-1] in SESSION_ENDING_ACTIONS
    )


def _success_members(spec: Mapping[str, Any], op: _Operation) -> dict[str, Any]:
    codes = sorted(code for code in op.responses if code.isdigit() and code.startswith("2"))
    if not codes:
        return {}
    return _properties(spec, op.responses[codes[0]].get("schema", {}))


def _body_members(spec: Mapping[str, Any], op: _Operation) -> dict[str, Any]:
    return _properties(spec, _body_schema(op.operation))


def _use_account(spec: Mapping[str, Any], op: _Operation) -> None:
    """Make a JSON body that carries credentials send the run's: its password members
    ``{{password}}``, its ``email`` ``{{email}}`` (a sign-up: a new address), its refresh token
    ``{{refresh_token}}``, its one-time codes their variables. A secured body with an ``email``
    and no password names another account: ``{{signup_email}}``, the one the run signed up.
    Only members the example body has are replaced."""
    body = op.request.get("body", {})
    if body.get("mode") != "raw":
        return
    document = json.loads(body["raw"])
    if not isinstance(document, dict):
        return
    members = _body_members(spec, op)
    values = {
        member: f"{{{{{variable}}}}}"
        for member, variable in _waited_members().items()
        if member in members
    }
    if PASSWORD_MEMBERS & members.keys():
        values.update(dict.fromkeys(PASSWORD_MEMBERS & members.keys(), "{{password}}"))
        values["email"] = SIGN_UP_EMAIL if _signs_up(spec, op) else f"{{{{{EMAIL_VARIABLE}}}}}"
    elif op.credentials:  # no password: an email names another account, one the run made
        values["email"] = f"{{{{{SIGNUP_VARIABLE}}}}}"
    changed = {name: value for name, value in values.items() if name in document}
    if changed:
        op.request["body"] = _raw_json({**document, **changed})


def _waited_members() -> dict[str, str]:
    """Body member -> the variable a request sending it waits for (skipped while empty)."""
    return {REFRESH_VARIABLE: REFRESH_VARIABLE, **ONE_TIME_MEMBERS}


def _account_expect(
    spec: Mapping[str, Any], op: _Operation, account: _Account, expect: Expect
) -> Expect:
    """A token answer stores the tokens; a log-in's is a token response (RFC 6749), not a
    second-factor challenge; a request ending the session clears them; a sign-up's answer
    stores the new account's address."""
    if _ends_session(op):
        cleared = (account.token, account.expiry, REFRESH_VARIABLE)
        return replace(expect, save=(*expect.save, *(Save(v, "value", "") for v in cleared)))
    if _signs_up(spec, op) and "email" in _success_members(spec, op):
        return replace(expect, save=(*expect.save, Save(SIGNUP_VARIABLE, "body", "email")))
    if not _issues_tokens(spec, op):
        return expect
    members = _success_members(spec, op)
    saves = [Save(account.token, "body", "access_token")]
    if "expires_in" in members:
        saves.append(Save(account.expiry, "expiry", "expires_in"))
    if REFRESH_VARIABLE in members:
        saves.append(Save(REFRESH_VARIABLE, "body", REFRESH_VARIABLE))
    if op is account.login:
        expect = replace(
            expect,
            keys=tuple(name for name in TOKEN_MEMBERS if name in members),
            equal=(("mfa_required", False),) if "mfa_required" in members else (),
        )
    return replace(expect, save=(*expect.save, *saves))


def _access_guards(op: _Operation) -> tuple[Guard, ...]:
    """What the request needs before it may be sent: its credentials, the tokens and codes its
    body sends, the opt-in of an action replacing the server's data, the files of an upload."""
    guards = [Guard(c.variable, kind="credential") for c in op.credentials]
    raw = op.request.get("body", {}).get("raw", "")
    guards += [
        Guard(variable, kind="credential")
        for variable in dict.fromkeys([*_waited_members().values(), SIGNUP_VARIABLE])
        if f"{{{{{variable}}}}}" in raw
    ]
    action = op.path.rsplit("/", 1)[-1]
    if op.method == "post" and action in OPT_IN_ACTIONS:
        guards.append(Guard(OPT_IN_ACTIONS[action], kind="opt-in"))
    for entry in op.request.get("body", {}).get("formdata", []):
        if entry["type"] == "file":
            guards.append(Guard(entry["key"], kind="file"))
    return tuple(guards)


def _access_variables(
    spec: Mapping[str, Any],
    operations: list[_Operation],
    access: Mapping[int, tuple[Guard, ...]],
    account: _Account | None,
) -> dict[str, str]:
    """The collection variables the run's account and the guards read, with what each is for."""
    described: dict[str, str] = {}
    if account is not None:
        described.update(_account_variables(spec, operations, account))
    for op in operations:
        for c in op.credentials:
            described.setdefault(
                c.variable,
                f"{c.description} Secured operations send it (`{c.name}: {c.value}`) and are "
                "skipped while it is empty, as it is by default. To run them, set it in an "
                "environment or as the variable's current value: an initial value is exported "
                "with the collection.",
            )
        for guard in access[id(op)]:
            if guard.kind == "opt-in":
                described.setdefault(
                    guard.variable,
                    f"`{op.name}` replaces the server's data, so it runs only when this is "
                    f"`true`; it is empty by default, and the request is skipped.",
                )
    return described


def _account_variables(
    spec: Mapping[str, Any], operations: list[_Operation], account: _Account
) -> dict[str, str]:
    # The other requests answering tokens (a second-factor log-in, a refresh), and those of
    # them that trade a refresh token.
    issuers = " and ".join(
        f"`{op.name}`" for op in operations if _issues_tokens(spec, op) and op is not account.login
    )
    refreshes = " and ".join(
        f"`{op.name}`"
        for op in operations
        if _issues_tokens(spec, op) and REFRESH_VARIABLE in _body_members(spec, op)
    )
    acting = ", ".join(  # requests ending this account's sessions: log out, password change
        f"`{op.name}`"
        for op in operations
        if _ends_session(op) or (op.credentials and "new_password" in _body_members(spec, op))
    )
    return {
        EMAIL_VARIABLE: (
            f"The account the `{LOGIN_STEP}` requests log in with. By default the demo account "
            "that the development server (`./scripts/run`, SEED_DEMO_DATA) seeds: development "
            f"only, no other server has it. To use your own, set this and `{PASSWORD_VARIABLE}` "
            "in an environment (it wins over the collection)."
            + (
                f" The run acts on this account like any client: {acting} end its sessions (a "
                "password change sets the same password again), so use an account for testing."
                if acting
                else ""
            )
        ),
        PASSWORD_VARIABLE: (
            f"The password of `{EMAIL_VARIABLE}` (the demo account's by default). Put your own in "
            "an environment, type secret, or as the variable's current value; never as its "
            "initial value, which is exported with the collection."
        ),
        account.token: (
            f"The access token secured requests send (`Authorization: Bearer {{{{{account.token}"
            f"}}}}`), stored by the `{LOGIN_STEP}` requests (`{account.login.name}`)"
            + (f" and by {issuers}" if issuers else "")
            + "; secured requests are skipped while it is empty. It expires after `expires_in` "
            f"seconds (the log-in's answer says): send `{LOGIN_STEP}` again then. An API key "
            f"works too: set it here and clear `{account.expiry}`."
        ),
        account.expiry: (
            f"When `{account.token}` expires, in milliseconds since the epoch, stored with it: a "
            f"folder's `{SETUP_PREFIX}{LOGIN_STEP}` logs in again when less than "
            f"{RENEW_MARGIN_SECONDS} seconds are left, and not at all while this is empty and "
            f"`{account.token}` is set (a token you set yourself)."
        ),
        REFRESH_VARIABLE: (
            "The refresh token of the last log-in (single use)"
            + (
                f": {refreshes} trades it for a new pair, and is skipped while it is empty."
                if refreshes
                else "."
            )
        ),
        **_one_time_variables(spec, operations),
        **_signup_variable(spec, operations),
    }


def _signup_variable(spec: Mapping[str, Any], operations: list[_Operation]) -> dict[str, str]:
    users = ", ".join(
        f"`{op.name}`"
        for op in operations
        if f"{{{{{SIGNUP_VARIABLE}}}}}" in op.request.get("body", {}).get("raw", "")
    )
    signup = next((op.name for op in operations if _signs_up(spec, op)), None)
    if not users or signup is None:
        return {}
    return {
        SIGNUP_VARIABLE: f"The address of the account the last `{signup}` made (a new one each "
        f"time: `{SIGN_UP_EMAIL}`), which {users} names. A folder with such a request signs "
        "one up first while this is empty."
    }


def _one_time_variables(spec: Mapping[str, Any], operations: list[_Operation]) -> dict[str, str]:
    """The ONE_TIME_MEMBERS variables some request sends, with what they are for."""
    users = {
        variable: ", ".join(
            f"`{op.name}`" for op in operations if member in _body_members(spec, op)
        )
        for member, variable in ONE_TIME_MEMBERS.items()
    }
    texts = {
        "totp_code": "A current code from your authenticator app (it changes every 30 seconds "
        "and works once)",
        "mfa_token": "The `mfa_token` a log-in answers when the account has a second factor",
    }
    return {
        variable: f"{texts.get(variable, 'A value only a person has')}, for {names}: empty by "
        "default, so a run skips the requests that send it; set it to send one by hand."
        for variable, names in users.items()
        if names
    }


def _merged_parameters(
    shared: Iterable[Mapping[str, Any]], own: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Path-level parameters plus the operation's; the operation's win (Swagger 2.0 rule)."""
    merged = {(p["name"], p["in"]): p for p in shared}
    merged.update({(p["name"], p["in"]): p for p in own})
    return list(merged.values())


def _request(
    spec: Mapping[str, Any],
    path: str,
    method: str,
    operation: Mapping[str, Any],
    parameters: list[Mapping[str, Any]],
    definitions: Mapping[str, Any],
    credentials: tuple[_Credential, ...] = (),
) -> dict[str, Any]:
    by_location: dict[str, list[Mapping[str, Any]]] = {}
    for parameter in parameters:
        by_location.setdefault(parameter["in"], []).append(parameter)

    postman_path = _PATH_TEMPLATE.sub(r":\1", path)
    query = [
        _key_value(p, definitions, disabled=not p.get("required", False))
        for p in by_location.get("query", [])
    ]
    query += [
        {"key": c.name, "value": c.value, "disabled": False, "description": c.description}
        for c in credentials
        if c.location == "query"
    ]
    enabled_query = "&".join(f"{q['key']}={q['value']}" for q in query if not q["disabled"])
    url: dict[str, Any] = {
        "raw": f"{{{{{BASE_URL_VARIABLE}}}}}{postman_path}"
        + (f"?{enabled_query}" if enabled_query else ""),
        "host": [f"{{{{{BASE_URL_VARIABLE}}}}}"],
        "path": [segment for segment in postman_path.split("/") if segment],
    }
    if query:
        url["query"] = query
    variables = [_key_value(p, definitions) for p in by_location.get("path", [])]
    if variables:
        url["variable"] = [{k: v for k, v in var.items() if k != "disabled"} for var in variables]

    headers: list[dict[str, Any]] = []
    request: dict[str, Any] = {"method": method.upper(), "header": headers, "url": url}
    body_parameters = by_location.get("body", [])
    if body_parameters:
        media_type = (operation.get("consumes") or spec.get("consumes") or ["application/json"])[0]
        headers.append({"key": "Content-Type", "value": media_type, "type": "text"})
        example = _example(body_parameters[0].get("schema", {}), definitions, frozenset())
        request["body"] = _raw_json(example)
    elif by_location.get("formData"):  # Postman sets the multipart Content-Type (its boundary)
        request["body"] = {
            "mode": "formdata",
            "formdata": [_form_field(p, definitions) for p in by_location["formData"]],
        }
    headers.extend(
        {**_key_value(p, definitions, disabled=not p.get("required", False)), "type": "text"}
        for p in by_location.get("header", [])
    )
    headers.extend(
        {"key": c.name, "value": c.value, "type": "text", "description": c.description}
        for c in credentials
        if c.location == "header"
    )
    description = operation.get("description") or operation.get("summary")
    if description:
        request["description"] = description
    return request


def _form_field(parameter: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """A form field; a file one has no file chosen (``src``): pick it in Postman's Body tab."""
    if parameter.get("type") == "file":
        entry: dict[str, Any] = {"key": parameter["name"], "type": "file", "src": []}
        if parameter.get("description"):
            entry["description"] = parameter["description"]
        return entry
    required = parameter.get("required", False)
    return {**_key_value(parameter, definitions, disabled=not required), "type": "text"}


def _raw_json(document: Any) -> dict[str, Any]:
    return {
        "mode": "raw",
        "raw": json.dumps(document, indent=2, ensure_ascii=False),
        "options": {"raw": {"language": "json"}},
    }


# --- chaining --------------------------------------------------------------------------------


def _chains(spec: Mapping[str, Any], operations: list[_Operation]) -> list[_Chain]:
    """Every ``POST collection`` whose ``collection/{x}`` exists, answering 201 with the new
    item's id: an ``id``, or a member named like the path parameter (``user_id``)."""
    chains = []
    for create in operations:
        if create.method != "post" or "201" not in create.responses:
            continue
        schema = _resolve(spec, create.responses["201"].get("schema", {}))
        members = _properties(spec, schema)
        item: dict[str, _Operation] = {}
        param = None
        for op in operations:
            match = _ITEM_PATH.match(op.path)
            if match and match["collection"] == create.path:
                param = match["name"]
                item[op.method] = op
        key = "id" if "id" in members else param
        if param is None or key not in members:
            continue
        example = next(
            v["value"]
            for op in item.values()
            for v in op.request["url"].get("variable", [])
            if v["key"] == param
        )
        chains.append(_Chain(param, param, example, create, item, key=key))
    for chain in chains:  # the innermost chain whose items the collection is nested under
        outer = [c for c in chains if c is not chain and c.covers(chain.create.path)]
        chain.parent = max(outer, key=lambda c: len(c.item_path), default=None)
    _name_variables(chains)
    return chains


def _name_variables(chains: list[_Chain]) -> None:
    """A variable per chain, named after its path parameter. When chains share the parameter's
    name, the one of the current API keeps it, and the others (deprecated) are qualified by the
    first segment of their path that differs: ``/api/v1/tasks`` -> ``v1_task_id``."""
    by_param: dict[str, list[_Chain]] = {}
    for chain in chains:
        by_param.setdefault(chain.param, []).append(chain)
    for param, group in by_param.items():
        if len(group) < 2:
            continue
        current = [c for c in group if not c.create.deprecated]
        keep = current[0] if len(current) == 1 else None
        for chain in group:
            if chain is keep:
                continue
            other = keep or next(c for c in group if c is not chain)
            chain.variable = f"{_qualifier(chain.create.path, other.create.path)}_{param}"
    names = [c.variable for c in chains]
    for index, chain in enumerate(chains):  # still ambiguous (same paths?): number them
        if names.count(chain.variable) > 1:
            chain.variable = f"{chain.variable}_{index + 1}"


def _qualifier(path: str, other: str) -> str:
    theirs = other.split("/")
    for index, segment in enumerate(path.split("/")):
        if segment and (index >= len(theirs) or segment != theirs[index]):
            return re.sub(r"\W+", "_", segment).strip("_") or "other"
    return "other"


def _chains_over(chains: list[_Chain], path: str) -> list[_Chain]:
    """The chains whose variables a request on ``path`` uses, outermost first."""
    return sorted((c for c in chains if c.covers(path)), key=lambda c: len(c.item_path))


def _bind(request: dict[str, Any], variables: Mapping[str, str]) -> None:
    """Path parameter -> collection variable: the request's path variable takes its value."""
    for entry in request["url"].get("variable", []):
        if entry["key"] in variables:
            entry["value"] = f"{{{{{variables[entry['key']]}}}}}"


def _own_parents(
    folder: Folder,
    ops: list[_Operation],
    chains: list[_Chain],
    expects: Mapping[int, Expect],
    guards: Mapping[int, tuple[Guard, ...]],
) -> None:
    """Wrap a folder that works under a chained resource it does not create (tasks under a
    workspace) in a setup request creating one and a teardown request deleting it: the folder
    runs alone, works on its own resource (never on seeded data) and leaves nothing behind."""
    created = {id(op) for op in ops}
    needed = {
        id(chain): chain
        for op in ops
        for chain in _chains_over(chains, op.path)
        if id(chain.create) not in created and "delete" in chain.item
    }
    outermost_first = sorted(needed.values(), key=lambda c: len(c.item_path))
    if not outermost_first:
        return
    setup = [
        Step(
            f"{SETUP_PREFIX}{c.create.name}",
            copy.deepcopy(c.create.request),
            expects[id(c.create)],
            guards[id(c.create)],
        )
        for c in outermost_first
    ]
    teardown = [
        Step(
            f"{TEARDOWN_PREFIX}{c.item['delete'].name}",
            copy.deepcopy(c.item["delete"].request),
            expects[id(c.item["delete"])],
            guards[id(c.item["delete"])],
        )
        for c in reversed(outermost_first)
    ]
    folder.steps[:0] = setup
    folder.steps.extend(teardown)
    names = ", ".join(f"`{c.variable}`" for c in outermost_first)
    folder.description = (
        f"{folder.description}\n\nThe first request creates what this folder works in (it stores "
        f"{names}) and the last one deletes it, with everything created in it, and puts the "
        "example id back: the folder runs alone or in the whole collection, again and again."
    ).strip()


def _success_expect(spec: Mapping[str, Any], op: _Operation) -> Expect:
    """The documented success: the lowest 2xx, its body's media type and members, its headers."""
    codes = sorted(int(code) for code in op.responses if code.isdigit() and code.startswith("2"))
    if not codes:
        return _deprecation(op, Expect(status=None))
    status = codes[0]
    response = op.responses[str(status)]
    # Swagger 2.0 cannot mark a response header optional: one described as sent only sometimes
    # ('rel="next" when there is a next page') is not asserted.
    headers = tuple(
        name
        for name, header in response.get("headers", {}).items()
        if not _CONDITIONAL.search(header.get("description", ""))
    )
    if status == 204:
        return _deprecation(op, Expect(status=status, empty=True, headers=headers))
    produces = op.operation.get("produces") or spec.get("produces") or ["application/json"]
    if "schema" not in response:
        if op.operation.get("produces"):  # a file of its own media type: some bytes of it
            return _deprecation(
                op, Expect(status=status, media_type=produces[0], headers=headers, nonempty=True)
            )
        return _deprecation(op, Expect(status=status, headers=headers))
    schema = _resolve(spec, response["schema"])
    return _deprecation(
        op,
        Expect(
            status=status,
            media_type=produces[0],
            headers=headers,
            keys=tuple(_properties(spec, schema)),
            array=schema.get("type") == "array",
        ),
    )


def _deprecation(op: _Operation, expect: Expect) -> Expect:
    """A deprecated operation announces it on every response: assert the Deprecation header."""
    if not op.deprecated or DEPRECATION_HEADER in expect.headers:
        return expect
    return replace(expect, headers=(*expect.headers, DEPRECATION_HEADER))


def _error_expect(spec: Mapping[str, Any], op: _Operation, status: int) -> Expect:
    schema = _resolve(spec, op.responses.get(str(status), {}).get("schema", {}))
    if not set(_PROBLEM_MEMBERS) <= set(_properties(spec, schema)):
        return _deprecation(op, Expect(status=status))
    return _deprecation(
        op,
        Expect(
            status=status,
            media_type=PROBLEM_MEDIA_TYPE,
            keys=_PROBLEM_MEMBERS,
            equal=(("status", status),),
        ),
    )


def _workflow(
    spec: Mapping[str, Any],
    chain: _Chain,
    chains: list[_Chain],
    operations: list[_Operation],
    expects: Mapping[int, Expect],
    access: Mapping[int, tuple[Guard, ...]],
    variables: dict[str, str],
    bound: Mapping[str, str],
) -> list[Step]:
    """create, get, conditional get, patch with If-Match, stale patch, the item's other reads
    (a download, a history), delete, get again; for a resource others nest under: create, the
    nested resources' workflows in it, its other reads, delete, get. Every step keeps the access
    guards of its operation (a secured one is skipped without its credential).
    ``bound``: path parameter -> workflow variable of the enclosing resources."""
    get = chain.item.get("get")
    if get is None:
        return []
    stem = chain.variable.removesuffix("_id")
    id_var, etag_var, new_etag_var = (
        f"workflow_{chain.variable}",
        f"workflow_{stem}_etag",
        f"workflow_{stem}_etag_patched",
    )
    scope = {**bound, chain.param: id_var}
    create_expect = expects[id(chain.create)]
    get_expect = _success_expect(spec, get)

    def request(op: _Operation, **headers: str) -> dict[str, Any]:
        copied = copy.deepcopy(op.request)
        _bind(copied, scope)
        for name, value in headers.items():
            copied["header"] = [h for h in copied["header"] if h["key"] != name]
            copied["header"].append({"key": name, "value": value, "type": "text"})
        return copied

    def delete_and_get(latest_etag: str | None) -> list[Step]:
        delete = chain.item.get("delete")
        if delete is None:
            return []
        conditional = latest_etag is not None and delete.documents_header("If-Match")
        if_match = {"If-Match": f"{{{{{latest_etag}}}}}"} if conditional else {}
        delete_expect = _success_expect(spec, delete)
        steps = [
            Step(
                f"{delete.name}"
                + (" with If-Match" if conditional else "")
                + f": {delete_expect.status}",
                request(delete, **if_match),
                delete_expect,
                (*access[id(delete)], Guard(id_var)),
            )
        ]
        soft = delete.operation.get(SOFT_DELETE) or SOFT_DELETE_MEMBERS & set(
            _success_members(spec, get)
        )
        if soft:  # revoked, not removed: it still reads
            steps.append(
                Step(
                    f"{get.name} after the delete: {get_expect.status}, still there",
                    request(get),
                    replace(get_expect, equal=((chain.key, Var(id_var)),)),
                    access[id(get)],
                )
            )
        elif "404" in get.responses:
            steps.append(
                Step(
                    f"{get.name} after the delete: 404",
                    request(get),
                    _error_expect(spec, get, 404),
                    access[id(get)],
                )
            )
        return steps

    children = [c for c in chains if c.parent is chain and not c.create.deprecated]

    def reads() -> list[Step]:
        """GETs under the item that are not a nested resource's and need no input: the item's
        downloads, histories, audits."""
        under = [
            op
            for op in operations
            if op.method == "get"
            and op.path.startswith(chain.item_path + "/")
            and not any(op.path.startswith(child.create.path) for child in children)
            and not any(p.get("required") and p["in"] != "path" for p in _parameters(spec, op))
        ]
        return [
            Step(
                f"{op.name}: {expects[id(op)].status}", request(op), expects[id(op)], access[id(op)]
            )
            for op in under
        ]

    create = chain.create
    variables[id_var] = ""
    nested = [
        step
        for child in children
        for step in _workflow(spec, child, chains, operations, expects, access, variables, scope)
    ]
    if nested:
        return [
            Step(
                f"{create.name}: {create_expect.status}, store the id",
                request(create),
                replace(create_expect, save=(Save(id_var, "body", chain.key),)),
                access[id(create)],
            ),
            *nested,
            *reads(),
            *delete_and_get(None),
        ]

    has_etag = "ETag" in create_expect.headers and "ETag" in get_expect.headers
    if has_etag:
        variables.update({etag_var: "", new_etag_var: ""})
    body = json.loads(create.request.get("body", {}).get("raw", "{}"))
    required = _resolve(spec, _body_schema(create.operation)).get("required", [])
    echoed = tuple(
        (k, _echo(body[k]))
        for k in required
        if isinstance(body.get(k), str | int | float) and _echo(body[k]) is not None
    )
    saves = [Save(id_var, "body", chain.key)]
    if has_etag:
        saves.append(Save(etag_var, "header", "ETag"))
    steps = [
        Step(
            f"{create.name}: {create_expect.status}, store the id"
            + (" and ETag" if has_etag else ""),
            request(create),
            replace(create_expect, equal=echoed, save=tuple(saves)),
            access[id(create)],
        )
    ]
    same = (("ETag", Var(etag_var)),) if has_etag else ()
    steps.append(
        Step(
            f"{get.name}: {get_expect.status}, the same {chain.param.removesuffix('_id')}"
            + (" and ETag" if has_etag else ""),
            request(get),
            replace(get_expect, equal=((chain.key, Var(id_var)),), header_equal=same),
            access[id(get)],
        )
    )
    if has_etag and get.documents_header("If-None-Match") and "304" in get.responses:
        steps.append(
            Step(
                f"{get.name} with If-None-Match: 304",
                request(get, **{"If-None-Match": f"{{{{{etag_var}}}}}"}),
                _deprecation(get, Expect(status=304, empty=True)),
                access[id(get)],
            )
        )
    update = chain.item.get("patch") or chain.item.get("put")
    latest_etag = etag_var if has_etag else None
    if update is not None:
        update_expect = _success_expect(spec, update)
        document, change = _changed(spec, update, body)
        conditional = has_etag and update.documents_header("If-Match")
        if_match = {"If-Match": f"{{{{{etag_var}}}}}"} if conditional else {}
        changed = request(update, **if_match)
        changed["body"] = _raw_json(document)
        new_etag = "ETag" in update_expect.headers and has_etag
        steps.append(
            Step(
                f"{update.name}" + (" with If-Match" if conditional else "") + ": "
                f"{update_expect.status}" + (", store the new ETag" if new_etag else ""),
                changed,
                replace(
                    update_expect,
                    equal=change,
                    header_differ=(("ETag", Var(etag_var)),) if new_etag else (),
                    save=(Save(new_etag_var, "header", "ETag"),) if new_etag else (),
                ),
                access[id(update)],
            )
        )
        if new_etag:
            latest_etag = new_etag_var
        if conditional and "412" in update.responses:
            stale = copy.deepcopy(changed)
            steps.append(
                Step(
                    f"{update.name} with the stale ETag: 412",
                    stale,
                    _error_expect(spec, update, 412),
                    access[id(update)],
                )
            )
    return steps + reads() + delete_and_get(latest_etag)


def _echo(value: Any) -> Any:
    """What the answer should echo of a sent value: a variable's value for ``{{variable}}``,
    nothing to compare for a value made when sent (``postman-{{$guid}}@...``)."""
    if not isinstance(value, str) or "{{" not in value:
        return value
    whole = _VARIABLE_REFERENCE.fullmatch(value)
    return Var(whole["name"]) if whole else None


def _parameters(spec: Mapping[str, Any], op: _Operation) -> list[Mapping[str, Any]]:
    base_path = spec.get("basePath", "/").rstrip("/")
    shared = spec.get("paths", {}).get(op.path.removeprefix(base_path), {}).get("parameters", [])
    return _merged_parameters(shared, op.operation.get("parameters", []))


def _changed(
    spec: Mapping[str, Any], update: _Operation, created: Mapping[str, Any]
) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    """A document changing one plain string field of the created item, and the expected echo."""
    document = json.loads(update.request.get("body", {}).get("raw", "{}"))
    schema = _resolve(spec, _body_schema(update.operation))
    for name, prop in _properties(spec, schema).items():
        plain = prop.get("type") == "string" and not {"enum", "format"} & prop.keys()
        if plain and isinstance(created.get(name), str) and not prop.get("readOnly"):
            value = f"{created[name]} (changed)"[: prop.get("maxLength", 1000)]
            if update.method == "patch":  # a merge patch: only what changes
                document = {}
            document[name] = value
            return document, ((name, value),)
    return document, ()


def _body_schema(operation: Mapping[str, Any]) -> Mapping[str, Any]:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "body":
            return parameter.get("schema", {})
    return {}


def _resolve(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return spec.get("definitions", {}).get(name, {})
    return schema


def _properties(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """An object schema's properties, through ``$ref`` and ``allOf``."""
    schema = _resolve(spec, schema)
    properties: dict[str, Any] = {}
    for part in schema.get("allOf", []):
        properties.update(_properties(spec, part))
    properties.update(schema.get("properties", {}))
    return properties


# --- test scripts ----------------------------------------------------------------------------


def _render(step: Step) -> dict[str, Any]:
    events = []
    if step.guards:
        events.append(
            {
                "listen": "prerequest",
                "script": {"type": "text/javascript", "exec": postman_guard_script(step.guards)},
            }
        )
    events.append(
        {
            "listen": "test",
            "script": {"type": "text/javascript", "exec": postman_test_script(step.expect)},
        }
    )
    return {"name": step.name, "event": events, "request": step.request, "response": []}


def _js(value: Any) -> str:
    if isinstance(value, Var):
        return f"pm.collectionVariables.get({json.dumps(value.name)})"
    return json.dumps(value, ensure_ascii=False)


def _label(value: Any) -> str:
    return f"{{{{{value.name}}}}}" if isinstance(value, Var) else json.dumps(value)


def postman_guard_script(guards: Iterable[Guard]) -> list[str]:
    """The pre-request script skipping the request unless every guard allows it (the first
    guard that refuses names the reason in the console)."""
    lines = ['var skip = "";']
    for guard in guards:
        lines += _guard_lines(guard)
    lines += ["if (skip) {", "    console.warn(skip);", "    pm.execution.skipRequest();", "}"]
    return lines


def _guard_lines(guard: Guard) -> list[str]:
    """A comment, a condition refusing the request, and the reason it gives."""
    name = f"{{{{{guard.variable}}}}}"
    value = f'(pm.variables.get({_js(guard.variable)}) || "")'
    prelude: list[str] = []
    if guard.kind == "id":
        comment = "Delete only what this run created: never an example (seeded) resource."
        refuses = f"{_js(['', *guard.refused])}.includes({value})"
        reason = f"skipped: {name} holds no id that this run created"
    elif guard.kind == "credential":
        comment = f"Sent once {name} is set (a credential, a token or a code the request sends)."
        refuses = f'{value} === ""'
        reason = f"skipped: {name} is empty (the collection's variables say what sets it)"
    elif guard.kind == "unset":
        comment = f"Needed only while {name} is empty."
        refuses = f'{value} !== ""'
        reason = f"skipped: {name} holds one already"
    elif guard.kind == "login":
        expiry = guard.variable + EXPIRY_SUFFIX
        comment = (
            f"Log in unless {name} holds a token valid for {RENEW_MARGIN_SECONDS} more seconds "
            "(one set by hand, with no recorded expiry, is kept)."
        )
        prelude = [f"var expiresAt = Number(pm.variables.get({_js(expiry)}) || 0);"]
        refuses = (
            f'{value} !== "" && '
            f"(!expiresAt || Date.now() < expiresAt - {RENEW_MARGIN_SECONDS * 1000})"
        )
        reason = f"skipped: {name} holds a token that is still valid"
    elif guard.kind == "opt-in":
        comment = "This replaces the server's data: it never runs by default."
        refuses = f'{value} !== "true"'
        reason = f"skipped: it replaces the server's data; set {name} to true to run it"
    else:  # an upload: a run cannot make the file, someone must choose it
        comment = f"An upload: sent once a file is chosen for {guard.variable} (Body tab)."
        prelude = [
            "var form = pm.request.body && pm.request.body.formdata;",
            f"var file = form && form.one({_js(guard.variable)});",
        ]
        refuses = "!(file && file.src && file.src.length)"
        reason = f"skipped: no file chosen for the form field {guard.variable}"
    return [
        f"// {comment}",
        *prelude,
        f"if (!skip && {refuses}) {{",
        f"    skip = {_js(reason)};",
        "}",
    ]


def postman_test_script(expect: Expect) -> list[str]:
    """The JavaScript lines of a request's test script (Postman's ``pm`` API)."""
    lines: list[str] = []

    def check(title: str, assertion: str) -> None:
        lines.extend([f"pm.test({json.dumps(title)}, function () {{", f"    {assertion};", "});"])

    if expect.status is None:
        check("status is 2xx", "pm.response.to.be.success")
    else:
        check(f"status is {expect.status}", f"pm.response.to.have.status({expect.status})")
    if expect.media_type:
        check(
            f"Content-Type is {expect.media_type}",
            'pm.expect((pm.response.headers.get("Content-Type") || "").split(";")[0].trim())'
            f".to.eql({_js(expect.media_type)})",
        )
    if expect.empty:
        check("no body", 'pm.expect(pm.response.text()).to.eql("")')
    if expect.nonempty:
        check("body is not empty", "pm.expect(pm.response.responseSize).to.be.above(0)")
    for name in expect.headers:
        check(f"has header {name}", f"pm.response.to.have.header({_js(name)})")
    if expect.keys:
        check(
            "body has " + ", ".join(expect.keys),
            f"pm.expect(pm.response.json()).to.include.all.keys({_js(list(expect.keys))})",
        )
    if expect.array:
        check("body is an array", 'pm.expect(pm.response.json()).to.be.an("array")')
    for member, value in expect.equal:
        check(
            f"body.{member} is {_label(value)}",
            f"pm.expect(pm.response.json()[{_js(member)}]).to.eql({_js(value)})",
        )
    for name, variable in expect.header_equal:
        check(
            f"{name} is {_label(variable)}",
            f"pm.expect(pm.response.headers.get({_js(name)})).to.eql({_js(variable)})",
        )
    for name, variable in expect.header_differ:
        check(
            f"{name} differs from {_label(variable)}",
            f"pm.expect(pm.response.headers.get({_js(name)})).to.not.eql({_js(variable)})",
        )
    if expect.save:
        condition = (
            "pm.response.code >= 200 && pm.response.code < 300"
            if expect.status is None
            else f"pm.response.code === {expect.status}"
        )
        lines.append(f"if ({condition}) {{")
        for save in expect.save:
            source = {
                "body": f"pm.response.json()[{_js(save.key)}]",
                "header": f"pm.response.headers.get({_js(save.key)})",
                "value": _js(save.key),
                "expiry": f"String(Date.now() + 1000 * pm.response.json()[{_js(save.key)}])",
            }[save.source]
            lines.append(f"    pm.collectionVariables.set({_js(save.variable)}, {source});")
        lines.append("}")
    return lines


# --- examples --------------------------------------------------------------------------------


def _key_value(
    parameter: Mapping[str, Any], definitions: Mapping[str, Any], *, disabled: bool = False
) -> dict[str, Any]:
    value = _example(parameter, definitions, frozenset())
    if isinstance(value, list):  # arrays in a query or header: comma-separated (our API accepts)
        value = ",".join(_text(v) for v in value)
    entry = {"key": parameter["name"], "value": _text(value), "disabled": disabled}
    if parameter.get("description"):
        entry["description"] = parameter["description"]
    return entry


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _example(
    schema: Mapping[str, Any], definitions: Mapping[str, Any], seen: frozenset[str]
) -> Any:
    """An example value for a schema or parameter: its own example first, then one built from
    its parts (``$ref``, ``allOf``, properties, items), then a placeholder for its type."""
    for key in ("example", "x-example", "default"):
        if key in schema:
            return schema[key]
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen or name not in definitions:  # recursive model: stop here
            return {}
        return _example(definitions[name], definitions, seen | {name})
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = _example(part, definitions, seen)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object_example(schema, definitions, seen)
    if kind == "array":
        items = schema.get("items")
        return [_example(items, definitions, seen)] if items else []
    if kind == "integer":
        return schema.get("minimum", 0)
    if kind == "number":
        return schema.get("minimum", 0.0)
    if kind == "boolean":
        return False
    if kind == "string":
        return _FORMAT_SAMPLES.get(schema.get("format", ""), "")
    return None


def _object_example(
    schema: Mapping[str, Any], definitions: Mapping[str, Any], seen: frozenset[str]
) -> dict[str, Any]:
    """Every writable property that has (or is built from) an example, plus every required one:
    a placeholder for an optional field would only make the example body fail validation."""
    required = set(schema.get("required", []))
    example: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if prop.get("readOnly"):
            continue  # the server sets it; never part of a request body
        if name in required or _has_example(prop, definitions, seen):
            example[name] = _example(prop, definitions, seen)
    return example


def _has_example(
    schema: Mapping[str, Any], definitions: Mapping[str, Any], seen: frozenset[str]
) -> bool:
    if any(key in schema for key in ("example", "x-example", "default", "enum")):
        return True
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return name not in seen and name in definitions
    if "allOf" in schema:
        return any(_has_example(part, definitions, seen) for part in schema["allOf"])
    if schema.get("type") == "array" and "items" in schema:
        return _has_example(schema["items"], definitions, seen)
    return "properties" in schema
