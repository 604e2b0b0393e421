"""A Postman Collection (v2.1) generated from the Swagger 2.0 spec, so it never drifts from the API.

``postman_collection(spec, base_url)`` is a pure function of the spec that ``/swagger.json`` serves,
and it is also a test suite (run by Newman: ``scripts/newman``):

* One folder per tag, one request per operation, with example path variables, query parameters
  (disabled unless required), header parameters (likewise) and JSON bodies taken from the spec's
  examples. Each request has a test script asserting the operation's documented success status,
  the Content-Type, the documented response headers and the members of the response model; a
  deprecated operation's also asserts the ``Deprecation`` header (RFC 9745).
* Resources are chained: when ``POST /things`` answers 201 with an ``id`` and ``/things/{thing_id}``
  exists, that is a chain, and ``thing_id`` a collection variable (initially the spec's example id)
  that every request under ``/things/{thing_id}`` uses, nested paths included. The POST's script
  stores the created id in it, so the requests after it work on what the run created; the DELETE
  (which runs last in its folder) puts the example id back. Two chains with the same path
  parameter get distinct variables: a deprecated one is qualified by its path (``v1_task_id``).
* Nothing is ever deleted that the run did not create: every DELETE of a chained resource has a
  pre-request script that skips it while its variable is empty or still the example id (a seeded
  resource, such as the default workspace).
* A folder that works under a resource it does not create itself (tasks under a workspace) gets a
  setup request creating one and a teardown request deleting it, with everything in it, at the end:
  each folder runs alone (``newman --folder tasks``) as well as in the whole collection, never
  touches seeded data, and leaves nothing behind.
* Secured operations (``security`` naming an apiKey scheme of ``securityDefinitions``) send
  their credential from a collection variable named after the scheme, empty by default:
  ``Authorization: Bearer {{admin_token}}``. A pre-request script skips them while it is empty,
  so the collection runs without a token and fully with one. An action replacing the server's
  data (``POST .../restore``, ``OPT_IN_ACTIONS``) runs only when its variable (``allow_restore``)
  is ``true``; an upload (a ``formData`` file) only once someone has chosen the file.
* A "Workflow" folder per chain of the current (not deprecated) API: create, get, conditional get
  (If-None-Match: 304), patch with If-Match from the stored ETag, the same patch with the stale
  ETag (412), the item's other reads (a history, a download), delete, get (404); each step that
  the spec documents, chained through collection variables; chains needing a credential last.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from flask import Flask

POSTMAN_SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
BASE_URL_VARIABLE = "baseUrl"
DEFAULT_BASE_URL = "http://127.0.0.1:5000"
WORKFLOW_FOLDER = "Workflow"
SETUP_PREFIX = "setup: "
TEARDOWN_PREFIX = "teardown: "
# Error responses documented with an RFC 9457 model (type, title, status) use this media type.
PROBLEM_MEDIA_TYPE = "application/problem+json"
_PROBLEM_MEMBERS = ("type", "title", "status")
# What every response of a deprecated operation carries (RFC 9745).
DEPRECATION_HEADER = "Deprecation"

# Swagger 2.0 path-item keys that are operations, in the order Postman shows them.
_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
_CONDITIONAL = re.compile(r"\b(when|if|unless|only)\b", re.IGNORECASE)
_PATH_TEMPLATE = re.compile(r"\{([^}/]+)\}")
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
    source: Literal["body", "header", "value"]  # a body member, a header, or a fixed value
    key: str  # the member's or header's name, or the value itself


@dataclass(frozen=True)
class Guard:
    """Skip the request (pre-request script) unless ``variable`` allows it. ``kind`` says how:

    * ``"id"``: the variable holds an id this run created, neither empty nor one of ``refused``
      (a DELETE never targets what the run did not create);
    * ``"credential"``: the variable is not empty (a secured operation needs its credential);
    * ``"opt-in"``: the variable is ``"true"`` (an action replacing the server's data);
    * ``"file"``: a file is chosen for the form field ``variable`` (an upload).
    """

    variable: str
    refused: tuple[str, ...] = ()
    kind: Literal["id", "credential", "opt-in", "file"] = "id"


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


@dataclass
class _Chain:
    """``POST collection`` creates items addressed by ``item_path`` (``collection/{param}``)."""

    param: str  # the path parameter naming an item
    variable: str  # the collection variable holding the current item's id
    example: str
    create: _Operation
    item: dict[str, _Operation]  # method -> operation on item_path
    parent: _Chain | None = None  # the chain whose item path ``create`` is nested under

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


def postman_collection(spec: Mapping[str, Any], base_url: str = DEFAULT_BASE_URL) -> dict[str, Any]:
    """Turn a Swagger 2.0 spec into a Postman Collection v2.1 document (a JSON-ready dict)."""
    info = spec.get("info", {})
    title = info.get("title", "API")
    plan = collection_plan(spec)
    description = (info.get("description") or "").strip()
    variables = {BASE_URL_VARIABLE: base_url.rstrip("/"), **plan.variables}
    access = "".join(f"\n\n`{name}`: {text}" for name, text in plan.descriptions.items())
    return {
        "info": {
            # Stable id: re-importing offers to replace the collection instead of duplicating it.
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"postman:{title}")),
            "name": title,
            "description": f"{description}\n\nGenerated from the API's Swagger spec "
            f"(API version {info.get('version', '?')}). Set the `{BASE_URL_VARIABLE}` "
            "collection variable to the server you test. Every request has a test script; "
            f"run the whole collection (Runner, or Newman) against a development server.{access}",
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


def collection_plan(spec: Mapping[str, Any]) -> Plan:
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

    chains = _chains(spec, operations)
    access = {id(op): _access_guards(op) for op in operations}
    descriptions = _access_variables(operations, access)
    variables = dict.fromkeys(descriptions, "")
    variables.update({chain.variable: chain.example for chain in chains})
    for op in operations:
        _bind(op.request, {c.param: c.variable for c in _chains_over(chains, op.path)})
    expects = {id(op): _success_expect(spec, op) for op in operations}
    guards: dict[int, tuple[Guard, ...]] = dict(access)
    for chain in chains:
        create = expects[id(chain.create)]
        expects[id(chain.create)] = replace(
            create, save=(*create.save, Save(chain.variable, "body", "id"))
        )
        delete = chain.item.get("delete")
        if delete is not None:  # after the delete, point the variable at the example again
            expect = expects[id(delete)]
            saved = Save(chain.variable, "value", chain.example)
            expects[id(delete)] = replace(expect, save=(*expect.save, saved))
            guards[id(delete)] = (*access[id(delete)], Guard(chain.variable, (chain.example,)))

    folders: dict[str, Folder] = {
        tag["name"]: Folder(tag["name"], tag.get("description", "")) for tag in spec.get("tags", [])
    }
    # Creates first (a list then shows what the run made); deletes last (deepest path first), so
    # nothing after them needs what they removed.
    creates = {id(chain.create) for chain in chains}
    ordered = sorted(
        operations,
        key=lambda op: (
            op.method == "delete",
            -op.path.count("/") if op.method == "delete" else id(op) not in creates,
        ),
    )
    members: dict[str, list[_Operation]] = {}
    for op in ordered:
        tag = (op.operation.get("tags") or ["default"])[0]
        folder = folders.setdefault(tag, Folder(tag, ""))
        folder.steps.append(Step(op.name, op.request, expects[id(op)], guards[id(op)]))
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
    for chain in sorted(chains, key=lambda c: bool(access[id(c.create)])):
        if chain.parent is None and not chain.create.deprecated:
            workflow.steps.extend(
                _workflow(spec, chain, chains, operations, expects, access, variables, {})
            )
    result = [workflow] if workflow.steps else []
    result += [folder for folder in folders.values() if folder.steps]
    return Plan(result, variables, descriptions)


def _credentials(spec: Mapping[str, Any], operation: Mapping[str, Any]) -> tuple[_Credential, ...]:
    """What the operation's ``security`` (or the spec's default) asks to send: the first
    alternative made of apiKey schemes (Swagger 2.0 has no bearer scheme: an apiKey in the
    Authorization header is the usual stand-in, and it carries ``Bearer <token>``). Other scheme
    types (basic, oauth2) are left to Postman's Authorization tab: nothing is sent or guarded."""
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


def _access_guards(op: _Operation) -> tuple[Guard, ...]:
    """What the request needs before it may be sent: its credentials, the opt-in of an action
    replacing the server's data, the files of an upload."""
    guards = [Guard(c.variable, kind="credential") for c in op.credentials]
    action = op.path.rsplit("/", 1)[-1]
    if op.method == "post" and action in OPT_IN_ACTIONS:
        guards.append(Guard(OPT_IN_ACTIONS[action], kind="opt-in"))
    for entry in op.request.get("body", {}).get("formdata", []):
        if entry["type"] == "file":
            guards.append(Guard(entry["key"], kind="file"))
    return tuple(guards)


def _access_variables(
    operations: list[_Operation], access: Mapping[int, tuple[Guard, ...]]
) -> dict[str, str]:
    """The collection variables the guards read (empty at first), with what each is for."""
    described: dict[str, str] = {}
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
    """Every ``POST collection`` answering 201 with an ``id`` whose ``collection/{x}`` exists."""
    chains = []
    for create in operations:
        if create.method != "post" or "201" not in create.responses:
            continue
        schema = _resolve(spec, create.responses["201"].get("schema", {}))
        if "id" not in _properties(spec, schema):
            continue
        item: dict[str, _Operation] = {}
        param = None
        for op in operations:
            match = _ITEM_PATH.match(op.path)
            if match and match["collection"] == create.path:
                param = match["name"]
                item[op.method] = op
        if param is None:
            continue
        example = next(
            v["value"]
            for op in item.values()
            for v in op.request["url"].get("variable", [])
            if v["key"] == param
        )
        chains.append(_Chain(param, param, example, create, item))
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
        if "404" in get.responses:
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
                replace(create_expect, save=(Save(id_var, "body", "id"),)),
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
    echoed = tuple((k, body[k]) for k in required if isinstance(body.get(k), str | int | float))
    saves = [Save(id_var, "body", "id")]
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
            replace(get_expect, equal=(("id", Var(id_var)),), header_equal=same),
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
        comment = f"A secured operation: sent once {name} holds the credential."
        refuses = f'{value} === ""'
        reason = f"skipped: {name} is empty (set it to run the secured requests)"
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
