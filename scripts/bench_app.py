"""HTTP benchmark of the Task API on a database, under gunicorn, against a bare Flask app.

Run it through the wrapper, which prepares the venv: ``./scripts/bench [--database-url ...]``.

This module has two roles:
* WSGI factories for gunicorn: ``bench_app:api_app()`` is the real app, configured only by the
  environment the driver sets (production profile, ``DATABASE_URL`` and ``SHARD_URLS`` naming
  the benchmark's scratch databases, ``JWT_KEYS_DIR`` holding a scratch signing key);
  ``bench_app:api_app_without_auth()`` is the same app with its authentication hook replaced by
  one that sets the caller the benchmark's token names, without checking anything (the baseline
  that authentication's cost is measured against); ``bench_app:bare_app()`` is Flask with one
  JSON endpoint, the baseline of everything. The apps seed nothing: the driver fills the
  databases and mints the access token before starting them.
* The driver (``main``): creates scratch databases (SQLite files in a temporary directory, or
  uniquely named PostgreSQL databases on the server ``--database-url`` names, dropped at the end
  even on Ctrl-C), migrates them with the project's migrations, seeds ``--tasks`` deterministic
  tasks into one workspace and a user who owns it, mints that user an access token, starts the
  three servers (``--workers`` sync workers each, like ``gunicorn -w 2 wsgi:app`` in
  docs/setup.md), loads each endpoint in turn with wrk (or, without wrk, a pure-Python generator)
  and prints requests/s, latency percentiles, the ratio to the bare endpoint and what
  authentication costs the list, with the targets of chapters 3 and 4.

The app's JSON access log is written as in production (stderr, INFO): only its destination, a
temporary file, differs, so the cost of formatting and writing every line is measured.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BARE_PATH = "/bare"
# The benchmark's workspace: a fixed id, so runs are comparable (it decides the shard).
WORKSPACE_ID = uuid.UUID("0193a1b2-0000-7000-8000-00000000be4c")
BENCH_USER_EMAIL = "bench-owner@example.com"
# An Argon2id hash nobody knows the password of: the benchmark's user only uses minted tokens.
UNUSABLE_PASSWORD_HASH = "$argon2id$v=19$m=8,t=1,p=1$bm90LWEtcmVhbC1zYWx0$AAAAAAAAAAAAAAAAAAAAAA"
# How the driver hands the access token to api_app_without_auth() in the gunicorn workers.
TOKEN_ENV = "BENCH_ACCESS_TOKEN"
READY_ENV = "BENCH_READY_DIR"  # where each gunicorn worker says its app is built
BOOT_TIMEOUT = 60  # seconds for every worker of a server to build its app
SEED_BATCH = 1000  # rows per INSERT ... VALUES batch
SHARD_NAMES = ("shard-1", "shard-2")
# Chapter 3's targets: throughput as a share of the bare endpoint's, measured in the same run.
TARGETS = {"list": 0.4, "get": 0.5, "304": 0.6}
# Chapter 4's target: authentication may cost at most this share of the list's throughput.
MAX_AUTH_COST = 0.10
DEFAULT_ACCESS_TOKEN_TTL = 900  # the app's default (app/config.py); longer when a run needs it
# The API budget per caller during the run: the limiter stays in the path (one counter update
# per request, in every list row alike), but the benchmark's one user never hits it.
UNLIMITED_API_RATE = "1000000000 per minute"

# The servers the driver starts: the factory each runs (``bench_app:<factory>()``).
BARE, API, API_NO_AUTH = "bare", "api", "api-no-auth"
FACTORIES = {BARE: "bare_app", API: "api_app", API_NO_AUTH: "api_app_without_auth"}


@dataclass(frozen=True)
class Endpoint:
    """One row of the table: a request, loaded on its own for ``--duration`` seconds."""

    label: str
    server: str  # BARE, API or API_NO_AUTH
    request: str  # "bare", "health", "list" (a page of 20) or "task" (one task by id)
    credential: str | None = None  # a key of Caller.credentials: the Authorization header sent
    if_none_match: bool = False  # with the task's current ETag: answered with a 304
    target: float | None = None  # the least share of the bare endpoint's throughput (chapter 3)
    auth_baseline: str | None = None  # the label of the same request without authentication

    @property
    def expected_status(self) -> int:
        return 304 if self.if_none_match else 200


LIST_NO_AUTH = "GET .../tasks?per_page=20 no auth"
ENDPOINTS = (
    Endpoint("bare Flask GET /bare", BARE, "bare"),
    Endpoint("GET /health/live", API, "health"),
    Endpoint(LIST_NO_AUTH, API_NO_AUTH, "list", target=TARGETS["list"]),
    Endpoint("GET .../tasks?per_page=20 JWT", API, "list", "jwt", target=TARGETS["list"],
             auth_baseline=LIST_NO_AUTH),
    Endpoint("GET .../tasks/{id} JWT", API, "task", "jwt", target=TARGETS["get"]),
    Endpoint("GET .../tasks/{id} If-None-Match JWT", API, "task", "jwt", if_none_match=True,
             target=TARGETS["304"]),
)  # fmt: skip

# --- the WSGI apps (imported by gunicorn workers) ----------------------------------------------


def api_app() -> Any:
    """The production app, configured by the environment the driver sets. It seeds nothing."""
    sys.path.insert(0, str(ROOT))
    from app import create_app

    return announce_ready(create_app())


def api_app_without_auth() -> Any:
    """The production app with authentication skipped: the hook ``init_authentication``
    installs is replaced, in its place among the ``before_request`` hooks, by one that sets the
    caller of the token in ``BENCH_ACCESS_TOKEN`` (verified once, here, by the app's own code).
    Everything after it (access checks in the services, rate limits, the queries) runs as with
    the token, so the difference between the two is what authenticating a request costs."""
    sys.path.insert(0, str(ROOT))
    from app import create_app
    from app.auth.authentication import _authenticate, authenticate_access_token
    from app.auth.principal import set_current_principal

    app = create_app()
    with app.test_request_context():
        principal = authenticate_access_token(os.environ[TOKEN_ENV])

    def authenticated_already() -> None:
        set_current_principal(principal)

    hooks = app.before_request_funcs[None]
    if hooks.count(_authenticate) != 1:
        raise RuntimeError("the app no longer installs _authenticate once: update the benchmark")
    hooks[hooks.index(_authenticate)] = authenticated_already
    return announce_ready(app)


def bare_app() -> Any:
    """The baseline: Flask alone, one small JSON response, no logging configured."""
    from flask import Flask, jsonify

    app = Flask("bare")

    @app.get(BARE_PATH)
    def bare() -> Any:
        return jsonify(message="Hello World")

    return announce_ready(app)


# --- load generation ----------------------------------------------------------------------------


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad_status: int  # neither 2xx nor 3xx
    socket_errors: int
    cpu: CpuUse | None = None  # what serving and generating the load used; None: unknown

    @staticmethod
    def combined(rounds: list[Result]) -> Result:
        """Rounds of equal length as one: mean throughput, median p50, worst p99, totals."""
        cpus = [r.cpu for r in rounds if r.cpu is not None]
        return Result(
            statistics.fmean(r.requests_per_second for r in rounds),
            statistics.median(r.p50_ms for r in rounds),
            max(r.p99_ms for r in rounds),
            sum(r.requests for r in rounds),
            sum(r.bad_status for r in rounds),
            sum(r.socket_errors for r in rounds),
            CpuUse.total(cpus) if len(cpus) == len(rounds) else None,
        )

    def cpu_ms_per_request(self) -> CpuUse | None:
        if self.cpu is None or not self.requests:
            return None
        return self.cpu.scaled(1000 / self.requests)


# --- CPU accounting -----------------------------------------------------------------------------
# Throughput on a machine shared with other work swings from minute to minute; the CPU time each
# request costs barely does. Read from /proc (Linux): elsewhere the columns stay empty.


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds (or ms per request, once scaled) of one load."""

    app: float  # the server's gunicorn workers (with SQLite, the database work is in here)
    database: float | None  # PostgreSQL's backends serving the scratch databases; None: SQLite,
    # or a server whose processes this machine cannot see
    generator: float  # wrk, or this process for the pure-Python generator

    @property
    def all(self) -> float:
        return self.app + (self.database or 0.0) + self.generator

    def scaled(self, factor: float) -> CpuUse:
        database = None if self.database is None else self.database * factor
        return CpuUse(self.app * factor, database, self.generator * factor)

    @staticmethod
    def total(uses: list[CpuUse]) -> CpuUse:
        databases = [u.database for u in uses]
        return CpuUse(
            sum(u.app for u in uses),
            None if None in databases else sum(d for d in databases if d is not None),
            sum(u.generator for u in uses),
        )


_PROC = Path("/proc")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None  # gone, or not ours to see
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...


def process_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) each process has used so far; processes gone are left out."""
    seconds = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            seconds[pid] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return seconds


def _is_postgres(pid: int) -> bool:
    try:
        return (_PROC / str(pid) / "comm").read_text().strip() == "postgres"
    except OSError:
        return False


def children_of(parent: int) -> list[int]:
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields is not None and int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def generator_cpu() -> float:
    """CPU seconds of this process and its finished children: wrk, or the Python threads."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def cpu_meter(server: Server, databases: Databases) -> Iterator[list[CpuUse]]:
    """Measure the CPU a load costs: yields a list that holds one ``CpuUse`` afterwards (none
    without /proc)."""
    measured: list[CpuUse] = []
    if not _PROC.is_dir():
        yield measured
        return
    workers = children_of(server.process.pid)
    backends = databases.backend_pids()
    before = process_cpu(workers), process_cpu(backends), generator_cpu()
    yield measured
    after = process_cpu(workers), process_cpu(backends), generator_cpu()

    def used(index: int) -> float:
        return sum(now - before[index].get(pid, now) for pid, now in after[index].items())

    # Backends this machine cannot see (another host, or a pid that is some other process
    # here): the database's CPU is unknown.
    visible = backends and all(_is_postgres(pid) for pid in backends)
    database = used(1) if visible and len(before[1]) == len(backends) else None
    measured.append(CpuUse(used(0), database, after[2] - before[2]))


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_MS[unit]


def run_wrk(
    url: str, headers: dict[str, str], duration: float, connections: int, threads: int
) -> Result:
    command = ["wrk", "--latency", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout

    def find(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, output)
        if match is None:
            if default is None:
                raise RuntimeError(f"cannot read wrk output:\n{output}")
            return default
        return match.group(1)

    socket_errors = sum(
        int(n)
        for n in re.findall(
            r"(\d+)", find(r"Socket errors: (connect \d+, read \d+, write \d+, timeout \d+)", "0")
        )
    )
    return Result(
        requests_per_second=float(find(r"Requests/sec:\s+([\d.]+)")),
        p50_ms=_ms(find(r"50%\s+([\d.]+\w+)")),
        p99_ms=_ms(find(r"99%\s+([\d.]+\w+)")),
        requests=int(find(r"(\d+) requests in")),
        bad_status=int(find(r"Non-2xx or 3xx responses: (\d+)", "0")),
        socket_errors=socket_errors,
    )


def run_python_load(
    url: str, headers: dict[str, str], duration: float, connections: int, threads: int
) -> Result:
    """Fallback without wrk: one thread per connection, each an http.client keep-alive
    connection (it reconnects when the server closes, as gunicorn's sync workers do). The GIL
    makes this a much weaker load generator than wrk: compare ratios, not absolute numbers."""
    del threads  # one Python thread per connection
    parsed = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", url)
    assert parsed is not None
    host, port, path = parsed.group(1), int(parsed.group(2)), parsed.group(3)
    deadline = time.perf_counter() + duration
    latencies: list[list[float]] = [[] for _ in range(connections)]
    bad = [0] * connections
    errors = [0] * connections

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                connection.close()
                continue
            latencies[index].append((time.perf_counter() - started) * 1000)
            if not 200 <= response.status < 400:
                bad[index] += 1
        connection.close()

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - started
    merged = sorted(value for per_thread in latencies for value in per_thread)
    if not merged:
        raise RuntimeError(f"no request to {url} succeeded")

    def percentile(q: float) -> float:
        return merged[min(len(merged) - 1, int(q * len(merged)))]

    return Result(len(merged) / elapsed, percentile(0.5), percentile(0.99), len(merged),
                  sum(bad), sum(errors))  # fmt: skip


# --- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    workers: int
    ready: Path  # each worker puts a file here once its app is built

    def wait_until_up(self) -> int:
        """Wait until every worker has built its app (booting takes seconds: imports, engines,
        keys; three servers boot at once), so no request of the warm-up waits for one."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"gunicorn exited with {self.process.returncode}:\n{tail}")
            if len(list(self.ready.iterdir())) >= self.workers:
                return self.port
            time.sleep(0.1)
        raise SystemExit(
            f"gunicorn on port {self.port}: fewer than {self.workers} workers ready within "
            f"{BOOT_TIMEOUT} s; its log: {self.log.read_text(errors='replace')[-3000:]}"
        )


def announce_ready(app: Any) -> Any:
    """Called by each factory with its app, in the worker: tell the driver this worker is up."""
    ready = os.environ.get(READY_ENV)
    if ready:
        (Path(ready) / str(os.getpid())).touch()
    return app


@contextmanager
def gunicorn(factory: str, workers: int, env: dict[str, str], log: Path) -> Iterator[Server]:
    """Start serving ``bench_app:<factory>()`` on a free port (``wait_until_up()`` waits for
    its workers); its stderr (the app log) goes to ``log``. Stopped on the way out."""
    port = free_port()
    ready = log.with_suffix(".ready")
    ready.mkdir()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        f"--workers={workers}",
        f"--bind=127.0.0.1:{port}",
        f"--pythonpath={ROOT / 'scripts'}",
        "--no-control-socket",  # gunicorn 27+: two masters would share ~/.gunicorn/gunicorn.ctl
        f"bench_app:{factory}()",
    ]
    with open(log, "ab") as sink:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env | {READY_ENV: str(ready)}, stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield Server(port, server, log, workers, ready)
    finally:
        server.send_signal(signal.SIGQUIT)  # quick shutdown: the master stops its workers now
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- databases ----------------------------------------------------------------------------------


@dataclass
class Databases:
    control: str
    shards: dict[str, str]  # empty: one shard, "main", on the control database
    engine: str  # what the summary says: "SQLite 3.45.1", "PostgreSQL 15.2"
    # The server processes serving the scratch databases now (PostgreSQL's backends; SQLite: none).
    backend_pids: Callable[[], list[int]] = list

    @property
    def settings(self) -> dict[str, str]:
        shard_urls = ",".join(f"{name}={url}" for name, url in self.shards.items())
        return {"DATABASE_URL": self.control, "SHARD_URLS": shard_urls}


@contextmanager
def scratch_databases(admin_url: str | None, shards: int, workdir: Path) -> Iterator[Databases]:
    """A control database and ``shards`` shard databases (0: the control database is the only
    shard), empty. SQLite files in ``workdir``, or new databases on the PostgreSQL server of
    ``admin_url`` (an account allowed to CREATE DATABASE), dropped on the way out."""
    names = ["control", *SHARD_NAMES[:shards]] if shards else ["control"]
    if admin_url is None:
        import sqlite3

        urls = {name: f"sqlite:///{workdir / name}.db" for name in names}
        yield Databases(
            urls["control"],
            {n: u for n, u in urls.items() if n != "control"},
            f"SQLite {sqlite3.sqlite_version}",
        )
        return

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    if admin.drivername != "postgresql+psycopg":
        raise SystemExit("--database-url: a postgresql+psycopg:// URL (psycopg 3 is installed)")
    prefix = f"taskapi_bench_{os.getpid()}_{secrets.token_hex(3)}"
    databases = {name: f"{prefix}_{name.replace('-', '_')}" for name in names}
    engine = create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=None)
    created: list[str] = []
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar()
            for database in databases.values():
                connection.execute(text(f'CREATE DATABASE "{database}"'))
                created.append(database)
        urls = {
            name: admin.set(database=db).render_as_string(hide_password=False)
            for name, db in databases.items()
        }

        def backend_pids() -> list[int]:
            with engine.connect() as connection:
                return list(
                    connection.execute(
                        text("SELECT pid FROM pg_stat_activity WHERE datname = ANY(:names)"),
                        {"names": created},
                    ).scalars()
                )

        yield Databases(
            urls["control"],
            {n: u for n, u in urls.items() if n != "control"},
            f"PostgreSQL {version}",
            backend_pids,
        )
    finally:
        with engine.connect() as connection:
            for database in created:  # FORCE: a worker killed mid-request may hold a connection
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        engine.dispose()


def seed_tasks(count: int) -> list[dict[str, Any]]:
    """``count`` deterministic task rows (same ids, timestamps and so ETags every run), newest
    last; about one in four has a description, each has one or two tags."""
    from app.tasks.models import Priority, Status, new_task_id

    base = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    statuses, priorities = list(Status), list(Priority)
    rows = []
    for index in range(count):
        created = base + timedelta(minutes=index)
        digest = hashlib.blake2b(str(index).encode()).digest()[:10]
        rows.append(
            {
                "id": new_task_id(int(created.timestamp() * 1000), digest),
                "title": f"Task {index + 1}",
                "description": f"Details of task {index + 1}." if index % 4 == 0 else None,
                "status": statuses[index % len(statuses)].value,
                "priority": priorities[index % len(priorities)].value,
                "due_date": base + timedelta(days=index % 30) if index % 3 else None,
                "created_at": created,
                "updated_at": created,
                "tags": [f"batch-{index % 5}", *(["bench"] if index % 2 else [])],
            }
        )
    return rows


@dataclass(frozen=True)
class Caller:
    """The benchmark's user, owner of the workspace, and the credentials it calls with."""

    user_id: uuid.UUID
    session_id: str
    access_token: str

    @property
    def credentials(self) -> dict[str, str]:
        """``Authorization`` header values by name; an ``Endpoint``'s ``credential`` picks one."""
        return {"jwt": f"Bearer {self.access_token}"}


def prepare(databases: Databases, tasks: int, auth: dict[str, str]) -> tuple[str, Caller]:
    """Migrate every database, create the workspace, insert the tasks and the workspace's owner,
    mint the owner an access token (signed with a key of ``auth``'s ``JWT_KEYS_DIR``, valid for
    its ``ACCESS_TOKEN_TTL``); the workspace's shard and the caller."""
    sys.path.insert(0, str(ROOT))
    from flask_migrate import upgrade
    from sqlalchemy import insert, text

    from app import create_app
    from app.db.shards import shard_session
    from app.tasks.models import TaskRow, TaskTagRow
    from app.workspaces import workspace_service

    app = create_app({"APP_ENV": "testing", "LOG_LEVEL": "WARNING", **databases.settings, **auth})
    try:
        with app.app_context():
            upgrade()
            workspace = workspace_service().create({"name": "Benchmark"}, workspace_id=WORKSPACE_ID)
            # Core INSERTs in batches: the repository's one-row-per-flush path would take
            # minutes for 10k tasks and measures nothing the benchmark is about.
            session = shard_session(workspace.shard)
            rows = seed_tasks(tasks)
            with session.begin():
                for start in range(0, len(rows), SEED_BATCH):
                    batch = rows[start : start + SEED_BATCH]
                    tags = [
                        {"workspace_id": WORKSPACE_ID, "task_id": row["id"], "tag": tag,
                         "position": position}
                        for row in batch
                        for position, tag in enumerate(row["tags"])
                    ]  # fmt: skip
                    columns = [
                        {k: v for k, v in row.items() if k != "tags"}
                        | {"workspace_id": WORKSPACE_ID, "version": 1}
                        for row in batch
                    ]
                    session.execute(insert(TaskRow), columns)
                    session.execute(insert(TaskTagRow), tags)
            caller = seed_caller()
            for engine in app.extensions["shards"].all_engines().values():
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    # Fresh statistics and visibility map, as autovacuum would leave them.
                    conn.execute(
                        text("VACUUM ANALYZE" if engine.name == "postgresql" else "ANALYZE")
                    )
            return workspace.shard, caller
    finally:
        app.extensions["shards"].dispose()


def seed_caller() -> Caller:
    """The workspace's owner, a login session and an access token, as a login would leave them
    (rows written directly: the benchmark measures reading tasks, not logging in)."""
    from app.auth.models import AuthSessionRow, MembershipRow, UserRow
    from app.auth.permissions import Role
    from app.auth.tokens import issue_access_token
    from app.db import db
    from app.tasks.models import new_task_id, utc_now

    now = utc_now()
    user_id, session_id = new_task_id(), str(uuid.uuid4())
    session = db.session()
    with session.begin():
        session.add(
            UserRow(id=user_id, email=BENCH_USER_EMAIL, password_hash=UNUSABLE_PASSWORD_HASH,
                    is_platform_admin=False, created_at=now, updated_at=now)
        )  # fmt: skip
        session.flush()  # no ORM relationships: the user row first, for the foreign keys
        session.add(
            AuthSessionRow(id=session_id, user_id=user_id, created_at=now,
                           expires_at=now + timedelta(days=1))
        )  # fmt: skip
        session.add(
            MembershipRow(workspace_id=WORKSPACE_ID, user_id=user_id, role=Role.OWNER.value,
                          created_at=now, updated_at=now)
        )  # fmt: skip
    return Caller(user_id, session_id, issue_access_token(user_id, session_id).token)


# --- the run ------------------------------------------------------------------------------------


def app_setting_names() -> set[str]:
    sys.path.insert(0, str(ROOT))
    from app.config import CONFIGS

    return {name for config in CONFIGS.values() for name in dir(config) if name.isupper()}


def auth_settings(workdir: Path, token_ttl: int) -> dict[str, str]:
    """A scratch signing key in ``workdir`` and the token lifetime: the same for the app that
    mints the token and for the servers that verify it."""
    sys.path.insert(0, str(ROOT))
    from app.auth.keys import rotate

    keys = workdir / "jwt-keys"
    rotate(keys)
    return {"JWT_KEYS_DIR": str(keys), "ACCESS_TOKEN_TTL": str(token_ttl)}


def production_env(
    databases: Databases, auth: dict[str, str], workdir: Path, redis: dict[str, str]
) -> dict[str, str]:
    """The production profile with a throwaway secret key, signing key and backup directory on
    the scratch databases; every app setting the shell may hold (DATABASE_URL, REDIS_URL, ...)
    removed first, so only ``redis`` (REDIS_URL and a scratch REDIS_KEY_PREFIX) brings Redis in."""
    drop = app_setting_names() | {"FLASK_DEBUG", "FLASK_APP", "TASK_STORAGE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        APP_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        PYTHONDONTWRITEBYTECODE="1",
        BACKUP_DIR=str(workdir / "backups"),
        RATE_LIMIT_API=UNLIMITED_API_RATE,
        **databases.settings,
        **auth,
        **redis,
    )
    return env


@contextmanager
def scratch_redis(url: str | None, prefix: str | None = None) -> Iterator[dict[str, str]]:
    """``REDIS_URL`` and a key prefix no one else uses (nothing when ``url`` is None); every key
    under that prefix deleted on the way out."""
    if url is None:
        yield {}
        return
    import redis

    prefix = prefix or f"taskapi-bench-{os.getpid()}-{secrets.token_hex(3)}:"
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(f"--redis-url: cannot reach Redis: {exc}") from None
    try:
        yield {"REDIS_URL": url, "REDIS_KEY_PREFIX": prefix}
    finally:
        # A handful of keys: rate-limit counters of one caller (revocations: none in a run).
        # Matched anywhere in the key: a limiter storage may put its own "LIMITS:" in front.
        leftovers = list(client.scan_iter(match=f"*{prefix}*", count=500))
        if leftovers:
            client.delete(*leftovers)
        client.close()


def machine_summary(generator: str, engine: str, load_before: float | None) -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    from gunicorn import __version__ as gunicorn_version

    load = f"{load_before:.2f}" if load_before is not None else "unknown"
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"gunicorn {gunicorn_version}, {engine}, load generator: {generator}; "
        f"load average before the run: {load}"
    )


def _terminate_as_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the clean-ups, like Ctrl-C


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark the Task API on a database, under gunicorn, against a bare "
        "Flask app, with and without authentication.",
    )
    parser.add_argument("-d", "--duration", type=float, default=10, help="seconds per endpoint")
    parser.add_argument("-c", "--connections", type=int, default=16, help="open connections")
    parser.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("-w", "--workers", type=int, default=2, help="gunicorn workers per app")
    parser.add_argument(
        "--database-url",
        help="PostgreSQL admin URL (postgresql+psycopg://postgres@127.0.0.1:5432/postgres): "
        "scratch databases are created there and dropped afterwards. Default: SQLite files "
        "in a temporary directory",
    )
    parser.add_argument(
        "--redis-url",
        help="Redis for the apps (redis://127.0.0.1:6379/15): revocation checks and rate-limit "
        "counters there, under a key prefix of the run's own, deleted afterwards. Default: none "
        "(revocations in the control database, counters in each worker's memory)",
    )
    parser.add_argument(
        "--redis-key-prefix",
        help="the run's Redis key prefix (default: taskapi-bench-<pid>-<random>:); every key "
        "under it is deleted afterwards",
    )
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="times the lists with and without authentication are each loaded, alternately "
        "(--duration each time): authentication's cost is the median of the rounds' costs",
    )  # fmt: skip
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in the workspace")
    parser.add_argument(
        "--shards", type=int, choices=range(len(SHARD_NAMES) + 1), default=len(SHARD_NAMES),
        help="shard databases beside the control one (0: the control database holds the tasks)",
    )  # fmt: skip
    parser.add_argument(
        "--python-load", action="store_true", help="use the pure-Python generator even with wrk"
    )
    parser.add_argument("--keep-log", type=Path, help="keep the app's JSON log at this path")
    args = parser.parse_args(argv)
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    if args.tasks < 1 or args.duration <= 0 or args.rounds < 1:
        parser.error("--tasks, --duration and --rounds must be positive")

    use_wrk = shutil.which("wrk") is not None and not args.python_load
    if use_wrk:
        generator, load = "wrk", run_wrk
    else:
        why = "forced by --python-load" if args.python_load else "wrk is not installed"
        generator = f"pure-Python threads ({why}; absolute numbers are lower than wrk's)"
        load = run_python_load
        print(f"note: {why}: using the pure-Python load generator", file=sys.stderr)

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load_before is not None and load_before > 0.5:
        print(
            f"note: load average {load_before:.2f}: other work competes for the CPUs",
            file=sys.stderr,
        )
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="taskapi-bench-"))
    app_log = workdir / "app.log"
    # The token is minted once, before the servers start: it must outlive the whole run.
    run_seconds = len(load_order(args.rounds)) * args.duration
    token_ttl = max(DEFAULT_ACCESS_TOKEN_TTL, math.ceil(run_seconds) + 600)
    try:
        with (
            scratch_databases(args.database_url, args.shards, workdir) as databases,
            scratch_redis(args.redis_url, args.redis_key_prefix) as redis,
        ):
            print(f"seeding {args.tasks} tasks ({databases.engine}) ...", file=sys.stderr)
            auth = auth_settings(workdir, token_ttl)
            shard, caller = prepare(databases, args.tasks, auth)
            env = production_env(databases, auth, workdir, redis)
            logs = {API: app_log, API_NO_AUTH: workdir / "no-auth.log", BARE: workdir / "bare.log"}
            envs = {API: env, API_NO_AUTH: env | {TOKEN_ENV: caller.access_token}, BARE: env}
            with ExitStack() as stack:  # all start at once; then wait for each
                servers = {
                    name: stack.enter_context(
                        gunicorn(factory, args.workers, envs[name], logs[name])
                    )
                    for name, factory in FACTORIES.items()
                }
                for server in servers.values():
                    server.wait_until_up()
                rows = measure(servers, databases, caller, args, load)
        log_lines = app_log.read_text(errors="replace").splitlines()
        access_lines = sum('"logger": "app.access"' in line for line in log_lines)
        if args.keep_log:
            shutil.copyfile(app_log, args.keep_log)
    except KeyboardInterrupt:
        print("interrupted: servers stopped, scratch databases dropped", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print_table(rows)
    threads = f"{args.threads} wrk threads" if use_wrk else "one Python thread each"
    log_fate = f"kept at {args.keep_log}" if args.keep_log else "then discarded"
    layout = f"control + {args.shards} shard databases" if args.shards else "one database"
    revocations = "in Redis" if args.redis_url else "in the control database"
    print(
        f"\n{args.duration:g} s per endpoint (the lists with and without authentication: "
        f"{args.rounds} times each, alternately), {args.connections} connections ({threads}); "
        f"gunicorn {args.workers} sync workers per app, production profile; {layout}, "
        f"{args.tasks} tasks in the workspace (on {shard}); revocation checks {revocations}; "
        f"app log (JWT server): {access_lines} JSON access lines ({log_fate})"
    )
    print(machine_summary(generator, databases.engine, load_before))
    failed = [row for row in rows if row.result.bad_status or row.result.socket_errors]
    if failed:
        print("error: some responses were neither 2xx nor 3xx, or sockets failed", file=sys.stderr)
        raise SystemExit(1)


@dataclass(frozen=True)
class Row:
    endpoint: Endpoint
    result: Result
    vs_bare: float  # throughput as a share of the bare endpoint's
    # Throughput lost to authentication, as a share of the baseline's, in each round.
    auth_costs: list[float]

    # The same from CPU per request, all processes together (None: unknown).
    auth_cpu_cost: float | None = None

    @property
    def auth_cost(self) -> float | None:
        return statistics.median(self.auth_costs) if self.auth_costs else None


def measure(
    servers: dict[str, Server],
    databases: Databases,
    caller: Caller,
    args: argparse.Namespace,
    load: Any,
) -> list[Row]:
    ports = {name: server.port for name, server in servers.items()}
    tasks = f"/api/v2/workspaces/{WORKSPACE_ID}/tasks"
    owner = {"Authorization": caller.credentials["jwt"]}
    listing = get(ports[API], f"{tasks}?per_page=1", owner)
    assert listing.status == 200, (listing.status, listing.body)  # type: ignore[attr-defined]
    page = json.loads(listing.body)  # type: ignore[attr-defined]
    assert page["total"] == args.tasks, page
    task = f"{tasks}/{page['items'][0]['id']}"
    etag = get(ports[API], task, owner).getheader("ETag")
    assert etag, f"GET {task} sent no ETag"
    # The two apps differ only by authentication: on, and skipped.
    for server, expected in ((API, 401), (API_NO_AUTH, 200)):
        status = get(ports[server], f"{tasks}?per_page=1").status
        if status != expected:
            raise SystemExit(f"{server}: a list without a token answered {status}, not {expected}")

    paths = {"bare": BARE_PATH, "health": "/health/live", "list": f"{tasks}?per_page=20",
             "task": task}  # fmt: skip

    def request_of(endpoint: Endpoint) -> tuple[int, str, dict[str, str]]:
        headers = {}
        if endpoint.credential is not None:
            headers["Authorization"] = caller.credentials[endpoint.credential]
        if endpoint.if_none_match:
            headers["If-None-Match"] = etag
        return ports[endpoint.server], paths[endpoint.request], headers

    # Warm up every worker (a new connection each time, so the kernel spreads them, and each
    # worker's pool opens its connections), and check that each answers as expected.
    for endpoint in ENDPOINTS:
        port, path, headers = request_of(endpoint)
        for _ in range(20 * args.workers):
            status = get(port, path, headers).status
            if status != endpoint.expected_status:
                raise SystemExit(
                    f"{endpoint.label}: expected {endpoint.expected_status}, got {status}"
                )

    runs: dict[str, list[Result]] = {endpoint.label: [] for endpoint in ENDPOINTS}
    for endpoint in load_order(args.rounds):
        port, path, headers = request_of(endpoint)
        print(f"loading {endpoint.label} for {args.duration:g} s ...", file=sys.stderr)
        with cpu_meter(servers[endpoint.server], databases) as cpu:
            result = load(f"http://127.0.0.1:{port}{path}", headers, args.duration,
                          args.connections, args.threads)  # fmt: skip
        runs[endpoint.label].append(replace(result, cpu=cpu[0] if cpu else None))
    bare = next(runs[e.label][0] for e in ENDPOINTS if e.server == BARE).requests_per_second
    rows = []
    for endpoint in ENDPOINTS:
        result = Result.combined(runs[endpoint.label])
        costs, cpu_cost = [], None
        if endpoint.auth_baseline is not None:  # round by round: each pair ran back to back
            pairs = zip(runs[endpoint.label], runs[endpoint.auth_baseline], strict=True)
            costs = [
                1 - mine.requests_per_second / base.requests_per_second for mine, base in pairs
            ]
            # Saturated cores serve requests at a rate inversely proportional to their CPU cost.
            mine_cpu = result.cpu_ms_per_request()
            base_cpu = Result.combined(runs[endpoint.auth_baseline]).cpu_ms_per_request()
            if mine_cpu is not None and base_cpu is not None:
                cpu_cost = 1 - base_cpu.all / mine_cpu.all
        rows.append(Row(endpoint, result, result.requests_per_second / bare, costs, cpu_cost))
    return rows


def load_order(rounds: int) -> list[Endpoint]:
    """``ENDPOINTS`` in order, except that the requests compared for authentication's cost are
    loaded ``rounds`` times each, alternately and in turn first (A B, B A, A B, ...), so that a
    machine that speeds up or slows down during the run weighs on both alike."""
    compared = {e.auth_baseline for e in ENDPOINTS if e.auth_baseline is not None}
    group = [e for e in ENDPOINTS if e.label in compared or e.auth_baseline is not None]
    order: list[Endpoint] = []
    for endpoint in ENDPOINTS:
        if endpoint not in group:
            order.append(endpoint)
        elif endpoint is group[0]:
            for round_ in range(rounds):
                order += group if round_ % 2 == 0 else group[::-1]
    return order


def print_table(rows: list[Row]) -> None:
    width = max(len(row.endpoint.label) for row in rows) + 1
    print(
        f"{'endpoint':{width}} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'vs bare':>7} "
        f"{'target':>6} {'auth cost':>9} {'CPU ms/request: app':>19} {'db':>5} {'load':>5} "
        f"{'requests':>8} {'non-2xx/3xx':>11} {'sock err':>8}"
    )
    for row in rows:
        r, target = row.result, row.endpoint.target
        wanted = f"{target:.0%}" if target is not None else ""
        cost = f"{row.auth_cost:.1%}" if row.auth_cost is not None else ""
        cpu = r.cpu_ms_per_request()
        app, database, generator = (
            ("", "", "")
            if cpu is None
            else (f"{cpu.app:.2f}", _ms_or_dash(cpu.database), f"{cpu.generator:.2f}")
        )
        print(
            f"{row.endpoint.label:{width}} {r.requests_per_second:7.0f} {r.p50_ms:7.2f} "
            f"{r.p99_ms:7.2f} {row.vs_bare:7.0%} {wanted:>6} {cost:>9} {app:>19} {database:>5} "
            f"{generator:>5} {r.requests:8d} {r.bad_status:11d} {r.socket_errors:8d}"
        )
    print()
    for row in rows:
        target = row.endpoint.target
        if target is not None and row.vs_bare < target:
            print(
                f"below target: {row.endpoint.label} at {row.vs_bare:.0%} of bare "
                f"(target {target:.0%})"
            )
    for row in rows:
        if row.auth_cost is None:
            continue
        verdict = "met" if row.auth_cost <= MAX_AUTH_COST else "NOT MET"
        rounds = ", ".join(f"{cost:.1%}" for cost in row.auth_costs)
        by_cpu = (
            "" if row.auth_cpu_cost is None else f"; from CPU per request: {row.auth_cpu_cost:.1%}"
        )
        print(
            f"auth cost of {row.endpoint.label}: {row.auth_cost:.1%} of the throughput of "
            f"{row.endpoint.auth_baseline} (target: at most {MAX_AUTH_COST:.0%}; {verdict}); "
            f"median of the rounds: {rounds}{by_cpu}"
        )


def _ms_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
