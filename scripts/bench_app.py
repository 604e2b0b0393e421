"""HTTP benchmark of the Task API on a database, under gunicorn, against a bare Flask app.

Run it through the wrapper, which prepares the venv: ``./scripts/bench [--database-url ...]``.

This module has two roles:
* WSGI factories for gunicorn: ``bench_app:api_app()`` is the real app, configured only by the
  environment the driver sets (production profile, ``DATABASE_URL`` and ``SHARD_URLS`` naming
  the benchmark's scratch databases); ``bench_app:bare_app()`` is Flask with one JSON endpoint,
  the baseline. The app seeds nothing: the driver fills the databases before starting it.
* The driver (``main``): creates scratch databases (SQLite files in a temporary directory, or
  uniquely named PostgreSQL databases on the server ``--database-url`` names, dropped at the end
  even on Ctrl-C), migrates them with the project's migrations, seeds ``--tasks`` deterministic
  tasks into one workspace, starts both servers (``--workers`` sync workers each, like
  ``gunicorn -w 2 wsgi:app`` in docs/setup.md), loads each endpoint in turn with wrk (or, without
  wrk, a pure-Python generator) and prints requests/s, latency percentiles and the ratio to the
  bare endpoint, with the targets of chapter 3.

The app's JSON access log is written as in production (stderr, INFO): only its destination, a
temporary file, differs, so the cost of formatting and writing every line is measured.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BARE_PATH = "/bare"
# The benchmark's workspace: a fixed id, so runs are comparable (it decides the shard).
WORKSPACE_ID = uuid.UUID("0193a1b2-0000-7000-8000-00000000be4c")
SEED_BATCH = 1000  # rows per INSERT ... VALUES batch
SHARD_NAMES = ("shard-1", "shard-2")
# Chapter 3's targets: throughput as a share of the bare endpoint's, measured in the same run.
TARGETS = {"list": 0.4, "get": 0.5, "304": 0.6}

# --- the two WSGI apps (imported by gunicorn workers) ------------------------------------------


def api_app() -> Any:
    """The production app, configured by the environment the driver sets. It seeds nothing."""
    sys.path.insert(0, str(ROOT))
    from app import create_app

    return create_app()


def bare_app() -> Any:
    """The baseline: Flask alone, one small JSON response, no logging configured."""
    from flask import Flask, jsonify

    app = Flask("bare")

    @app.get(BARE_PATH)
    def bare() -> Any:
        return jsonify(message="Hello World")

    return app


# --- load generation ----------------------------------------------------------------------------


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad_status: int  # neither 2xx nor 3xx
    socket_errors: int


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

    def wait_until_up(self) -> int:
        _wait_until_up(self.process, self.port, self.log)
        return self.port


@contextmanager
def gunicorn(factory: str, workers: int, env: dict[str, str], log: Path) -> Iterator[Server]:
    """Start serving ``bench_app:<factory>()`` on a free port (``wait_until_up()`` waits for it);
    its stderr (the app log) goes to ``log``. Stopped on the way out."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        f"--workers={workers}",
        f"--bind=127.0.0.1:{port}",
        f"--pythonpath={ROOT / 'scripts'}",
        "--no-control-socket",  # gunicorn 27+: two masters would share ~/.gunicorn/gunicorn.ctl
        f"bench_app:{factory}()",
    ]
    with open(log, "ab") as sink:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield Server(port, server, log)
    finally:
        server.send_signal(signal.SIGQUIT)  # quick shutdown: the master stops its workers now
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"gunicorn exited with {server.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn did not listen on port {port} within 30 s")


# --- databases ----------------------------------------------------------------------------------


@dataclass
class Databases:
    control: str
    shards: dict[str, str]  # empty: one shard, "main", on the control database
    engine: str  # what the summary says: "SQLite 3.45.1", "PostgreSQL 15.2"

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
        yield Databases(
            urls["control"],
            {n: u for n, u in urls.items() if n != "control"},
            f"PostgreSQL {version}",
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


def prepare(databases: Databases, tasks: int) -> str:
    """Migrate every database, create the workspace, insert the tasks; its shard's name."""
    sys.path.insert(0, str(ROOT))
    from flask_migrate import upgrade
    from sqlalchemy import insert, text

    from app import create_app
    from app.db.shards import shard_session
    from app.tasks.models import TaskRow, TaskTagRow
    from app.workspaces import workspace_service

    app = create_app({"APP_ENV": "testing", "LOG_LEVEL": "WARNING", **databases.settings})
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
            for engine in app.extensions["shards"].all_engines().values():
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    # Fresh statistics and visibility map, as autovacuum would leave them.
                    conn.execute(
                        text("VACUUM ANALYZE" if engine.name == "postgresql" else "ANALYZE")
                    )
            return workspace.shard
    finally:
        app.extensions["shards"].dispose()


# --- the run ------------------------------------------------------------------------------------


def app_setting_names() -> set[str]:
    sys.path.insert(0, str(ROOT))
    from app.config import CONFIGS

    return {name for config in CONFIGS.values() for name in dir(config) if name.isupper()}


def production_env(databases: Databases) -> dict[str, str]:
    """The production profile with a throwaway key on the scratch databases; every app setting
    the shell may hold (DATABASE_URL, ADMIN_TOKEN, ...) removed first."""
    drop = app_setting_names() | {"FLASK_DEBUG", "FLASK_APP", "TASK_STORAGE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        APP_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        PYTHONDONTWRITEBYTECODE="1",
        **databases.settings,
    )
    return env


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
        "Flask app.",
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
    if args.tasks < 1 or args.duration <= 0:
        parser.error("--tasks and --duration must be positive")

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
    try:
        with scratch_databases(args.database_url, args.shards, workdir) as databases:
            print(f"seeding {args.tasks} tasks ({databases.engine}) ...", file=sys.stderr)
            shard = prepare(databases, args.tasks)
            env = production_env(databases)
            with (
                gunicorn("api_app", args.workers, env, app_log) as api,
                gunicorn("bare_app", args.workers, env, workdir / "bare.log") as bare,
            ):  # both start at once; then wait for each
                rows = measure(api.wait_until_up(), bare.wait_until_up(), args, load)
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
    print(
        f"\n{args.duration:g} s per endpoint, {args.connections} connections ({threads}); "
        f"gunicorn {args.workers} sync workers per app, production profile; {layout}, "
        f"{args.tasks} tasks in the workspace (on {shard}); "
        f"app log: {access_lines} JSON access lines ({log_fate})"
    )
    print(machine_summary(generator, databases.engine, load_before))
    failed = [row for row in rows if row[1].bad_status or row[1].socket_errors]
    if failed:
        print("error: some responses were neither 2xx nor 3xx, or sockets failed", file=sys.stderr)
        raise SystemExit(1)


Row = tuple[str, Result, float, float | None]  # label, result, ratio to bare, target


def measure(api_port: int, bare_port: int, args: argparse.Namespace, load: Any) -> list[Row]:
    tasks = f"/api/v2/workspaces/{WORKSPACE_ID}/tasks"
    listing = get(api_port, f"{tasks}?per_page=1")
    assert listing.status == 200, (listing.status, listing.body)  # type: ignore[attr-defined]
    page = json.loads(listing.body)  # type: ignore[attr-defined]
    assert page["total"] == args.tasks, page
    task = f"{tasks}/{page['items'][0]['id']}"
    etag = get(api_port, task).getheader("ETag")
    assert etag, f"GET {task} sent no ETag"

    targets: list[tuple[str, int, str, dict[str, str], int, float | None]] = [
        ("bare Flask GET /bare", bare_port, BARE_PATH, {}, 200, None),
        ("GET /health/live", api_port, "/health/live", {}, 200, None),
        ("GET .../tasks?per_page=20", api_port, f"{tasks}?per_page=20", {}, 200, TARGETS["list"]),
        ("GET .../tasks/{id}", api_port, task, {}, 200, TARGETS["get"]),
        ("GET .../tasks/{id} If-None-Match", api_port, task, {"If-None-Match": etag}, 304,
         TARGETS["304"]),
    ]  # fmt: skip
    # Warm up every worker (a new connection each time, so the kernel spreads them, and each
    # worker's pool opens its connections), and check that each answers as expected.
    for label, port, path, headers, expected, _target in targets:
        for _ in range(20 * args.workers):
            status = get(port, path, headers).status
            if status != expected:
                raise SystemExit(f"{label}: expected {expected}, got {status}")

    rows: list[Row] = []
    baseline = 0.0
    for label, port, path, headers, _expected, target in targets:
        url = f"http://127.0.0.1:{port}{path}"
        print(f"loading {label} for {args.duration:g} s ...", file=sys.stderr)
        result = load(url, headers, args.duration, args.connections, args.threads)
        baseline = baseline or result.requests_per_second
        rows.append((label, result, result.requests_per_second / baseline, target))
    return rows


def print_table(rows: list[Row]) -> None:
    print(
        f"{'endpoint':36} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8} {'target':>7} "
        f"{'requests':>9} {'non-2xx/3xx':>11} {'sock err':>8}"
    )
    for label, r, ratio, target in rows:
        wanted = f"{target:.0%}" if target is not None else ""
        print(
            f"{label:36} {r.requests_per_second:8.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
            f"{ratio:8.0%} {wanted:>7} {r.requests:9d} {r.bad_status:11d} {r.socket_errors:8d}"
        )
    for label, _r, ratio, target in rows:
        if target is not None and ratio < target:
            print(f"below target: {label} at {ratio:.0%} of bare (target {target:.0%})")


if __name__ == "__main__":
    main()
