"""HTTP benchmark of the Task API under gunicorn, against a bare Flask app served the same way.

Run it through the wrapper, which prepares the venv: ``./scripts/bench [--duration 10] ...``.

This module has two roles:
* WSGI factories for gunicorn: ``bench_app:seeded_app()`` is the real app in its production
  configuration with 100 deterministic tasks seeded (every worker seeds the same ids, timestamps
  and so ETags); ``bench_app:bare_app()`` is Flask with one JSON endpoint, the baseline.
  Seeding happens here, never in the app: production does not seed by itself.
* The driver (``main``): starts both servers (2 sync workers each, like ``gunicorn -w 2 wsgi:app``
  in docs/setup.md), loads each endpoint in turn with wrk (or, without wrk, a pure-Python
  generator) and prints requests/s, latency percentiles and the ratio to the bare endpoint.

The app's JSON access log is written as in production (stderr, INFO): only its destination, a
temporary file, differs, so the cost of formatting and writing every line is measured.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SEEDED_TASKS = 100
BARE_PATH = "/bare"
TARGET_RATIO = 0.5  # list and get should reach half the bare endpoint's throughput

# --- the two WSGI apps (imported by gunicorn workers) ------------------------------------------


def seeded_app() -> Any:
    """The production app (configured by the environment the driver sets) with seeded tasks."""
    sys.path.insert(0, str(ROOT))
    from app import create_app
    from app.tasks import seed_tasks, task_service

    app = create_app()
    with app.app_context():
        seed_tasks(task_service(), SEEDED_TASKS)
    return app


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
    url: str, headers: dict[str, str], duration: int, connections: int, threads: int
) -> Result:
    command = ["wrk", "--latency", f"-t{threads}", f"-c{connections}", f"-d{duration}s"]
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
    url: str, headers: dict[str, str], duration: int, connections: int, threads: int
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


@contextmanager
def gunicorn(factory: str, workers: int, env: dict[str, str], log: Path) -> Iterator[int]:
    """Serve ``bench_app:<factory>()`` on a free port; its stderr (the app log) goes to ``log``."""
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
        _wait_until_up(server, port, log)
        yield port
    finally:
        server.terminate()  # the master stops its workers
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


def production_env() -> dict[str, str]:
    """The production profile with a throwaway key; shell overrides of app settings removed."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"FLASK_DEBUG", "LOG_LEVEL", "LOG_FORMAT", "SEED_DEMO_DATA", "TASK_STORAGE"}
    }
    env.update(
        APP_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


# --- the run ------------------------------------------------------------------------------------


def machine_summary(generator: str) -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    from gunicorn import __version__ as gunicorn_version

    return (
        f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"gunicorn {gunicorn_version}, load generator: {generator}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark the Task API under gunicorn against a bare Flask app.",
    )
    parser.add_argument("-d", "--duration", type=int, default=10, help="seconds per endpoint")
    parser.add_argument("-c", "--connections", type=int, default=16, help="open connections")
    parser.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("-w", "--workers", type=int, default=2, help="gunicorn workers per app")
    parser.add_argument(
        "--python-load", action="store_true", help="use the pure-Python generator even with wrk"
    )
    parser.add_argument("--keep-log", type=Path, help="keep the app's JSON log at this path")
    args = parser.parse_args()
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")

    use_wrk = shutil.which("wrk") is not None and not args.python_load
    if use_wrk:
        generator, load = "wrk", run_wrk
    else:
        why = "forced by --python-load" if args.python_load else "wrk is not installed"
        generator = f"pure-Python threads ({why}; absolute numbers are lower than wrk's)"
        load = run_python_load
        print(f"note: {why}: using the pure-Python load generator", file=sys.stderr)

    workdir = Path(tempfile.mkdtemp(prefix="taskapi-bench-"))
    app_log = workdir / "app.log"
    try:
        env = production_env()
        with (
            gunicorn("seeded_app", args.workers, env, app_log) as api_port,
            gunicorn("bare_app", args.workers, env, workdir / "bare.log") as bare_port,
        ):
            rows = measure(api_port, bare_port, args, load)
        log_lines = app_log.read_text(errors="replace").splitlines()
        access_lines = sum('"logger": "app.access"' in line for line in log_lines)
        if args.keep_log:
            shutil.copyfile(app_log, args.keep_log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print_table(rows)
    threads = f"{args.threads} wrk threads" if use_wrk else "one Python thread each"
    log_fate = f"kept at {args.keep_log}" if args.keep_log else "then discarded"
    print(
        f"\n{args.duration} s per endpoint, {args.connections} connections ({threads}); "
        f"gunicorn {args.workers} sync workers per app, production profile, {SEEDED_TASKS} "
        f"seeded tasks per worker; app log: {access_lines} JSON access lines ({log_fate})"
    )
    print(machine_summary(generator))
    failed = [row for row in rows if row[1].bad_status or row[1].socket_errors]
    if failed:
        print("error: some responses were neither 2xx nor 3xx, or sockets failed", file=sys.stderr)
        raise SystemExit(1)


Row = tuple[str, Result, float]


def measure(api_port: int, bare_port: int, args: argparse.Namespace, load: Any) -> list[Row]:
    listing = get(api_port, "/api/v1/tasks?per_page=1")
    assert listing.status == 200, listing.status
    task_id = json.loads(listing.body)["items"][0]["id"]  # type: ignore[attr-defined]
    etag = get(api_port, f"/api/v1/tasks/{task_id}").getheader("ETag")
    assert etag, "GET /api/v1/tasks/<id> sent no ETag"

    targets: list[tuple[str, int, str, dict[str, str], int]] = [
        ("bare Flask GET /bare", bare_port, BARE_PATH, {}, 200),
        ("GET /health/live", api_port, "/health/live", {}, 200),
        ("GET /api/v1/tasks?per_page=20", api_port, "/api/v1/tasks?per_page=20", {}, 200),
        ("GET /api/v1/tasks/<id>", api_port, f"/api/v1/tasks/{task_id}", {}, 200),
        (
            "GET /api/v1/tasks/<id> If-None-Match",
            api_port,
            f"/api/v1/tasks/{task_id}",
            {"If-None-Match": etag},
            304,
        ),
    ]
    # Warm up every worker (new connection each time, so the kernel spreads them), and check
    # that each one answers as expected: same seed, same ETag, so 304 from any worker.
    for label, port, path, headers, expected in targets:
        for _ in range(50 * args.workers):
            status = get(port, path, headers).status
            if status != expected:
                raise SystemExit(f"{label}: expected {expected}, got {status}")

    rows: list[Row] = []
    baseline = 0.0
    for label, port, path, headers, _expected in targets:
        url = f"http://127.0.0.1:{port}{path}"
        print(f"loading {label} for {args.duration} s ...", file=sys.stderr)
        result = load(url, headers, args.duration, args.connections, args.threads)
        baseline = baseline or result.requests_per_second
        rows.append((label, result, result.requests_per_second / baseline))
    return rows


def print_table(rows: list[Row]) -> None:
    print(
        f"{'endpoint':38} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8} "
        f"{'requests':>9} {'non-2xx/3xx':>11} {'sock err':>8}"
    )
    for label, r, ratio in rows:
        print(
            f"{label:38} {r.requests_per_second:8.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} "
            f"{ratio:8.0%} {r.requests:9d} {r.bad_status:11d} {r.socket_errors:8d}"
        )
    for label, _r, ratio in rows:
        if label.startswith(("GET /api/v1/tasks?", "GET /api/v1/tasks/<id>")) and (
            ratio < TARGET_RATIO and "If-None-Match" not in label
        ):
            print(f"below target: {label} at {ratio:.0%} of bare (target {TARGET_RATIO:.0%})")


if __name__ == "__main__":
    main()
