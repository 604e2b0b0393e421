"""Chunked request bodies: over the limit is a 413, broken framing a 400, never a truncated body.

In process, through the test client with the environ a server builds for a chunked body (no
``CONTENT_LENGTH``, ``wsgi.input_terminated``) and the servers' own dechunking readers (gunicorn's
and werkzeug's dev server's) over raw bytes, in both configurations. Then for real: raw sockets
against gunicorn running ``wsgi:app`` in the production profile.
"""

from __future__ import annotations

import ast
import http.client
import io
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from gunicorn.http.body import Body, ChunkedReader
from gunicorn.http.unreader import IterUnreader
from werkzeug.exceptions import ClientDisconnected
from werkzeug.serving import DechunkedInput

from app import create_app
from app.config import BaseConfig
from app.core.errors import GENERIC_500_DETAIL, ApiRequest
from app.core.request_body import MALFORMED_CHUNKED_DETAIL, BoundedBodyRequest
from tests.auth import add_user
from tests.conftest import CapturedLog
from tests.conftest import test_keys_directory as signing_keys_directory
from tests.databases import fresh_databases

ROOT = Path(__file__).resolve().parent.parent
LIMIT = BaseConfig.MAX_CONTENT_LENGTH
TASKS = "/api/v1/tasks"


def padded_json(size: int) -> bytes:
    """A valid task body of exactly ``size`` bytes."""
    body = b'{"title":"x"}'
    return body + b" " * (size - len(body))


# The body: its first MiB is valid JSON, then 2 MB more.
OVERSIZED = padded_json(LIMIT) + b"Z" * (2 * 1024 * 1024)


def chunked(body: bytes, size: int = 64 * 1024) -> bytes:
    """``body`` in valid chunked transfer coding."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


MALFORMED = {
    "bad chunk size": b'zz\r\n{"title":"x"}\r\n0\r\n\r\n',
    "missing CRLF after a chunk": b'e\r\n{"title":"ok"}XX0\r\n\r\n',
    "invalid chunk extension": b'e;bad ext=\x01\r\n{"title":"ok"}\r\n0\r\n\r\n',
    "no CRLF after the last chunk": b'e\r\n{"title":"ok"}\r\n0\r\n',
    "ends inside a chunk": b'e\r\n{"title":"o',
}


def gunicorn_input(raw: bytes) -> IO[bytes]:
    """gunicorn's own wsgi.input for a chunked request whose body bytes are ``raw``."""
    return Body(ChunkedReader(SimpleNamespace(), IterUnreader([raw])))  # type: ignore[return-value]


def dev_server_input(raw: bytes) -> IO[bytes]:
    """werkzeug's dev server's wsgi.input for the same."""
    return DechunkedInput(io.BytesIO(raw))  # type: ignore[return-value]


READERS: dict[str, Callable[[bytes], IO[bytes]]] = {
    "gunicorn": gunicorn_input,
    "dev-server": dev_server_input,
}


def post_streamed(client: FlaskClient, wsgi_input: Any, path: str = TASKS) -> Any:
    """POST the way a server hands over a chunked request: no CONTENT_LENGTH, a terminated input."""
    response = client.post(
        path,
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": wsgi_input, "wsgi.input_terminated": True},
    )
    assert "CONTENT_LENGTH" not in response.request.environ
    return response


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    body = response.json
    assert body["status"] == status
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def without_request_id(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k != "request_id"}


def task_count(client: FlaskClient) -> int:
    return int(client.get(TASKS).json["total"])


class EndlessInput:
    """A chunked body that never ends; records what was asked of it."""

    def __init__(self) -> None:
        self.served = 0
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        assert size >= 0, "an endless body must never be read to its end"
        self.largest_read = max(self.largest_read, size)
        self.served += size
        return b" " * size


class FailingInput:
    """Serves ``after`` bytes of a JSON body, then raises ``error``."""

    def __init__(self, error: BaseException, after: int = 0) -> None:
        self.error = error
        self.left = padded_json(after) if after else b""

    def read(self, size: int = -1) -> bytes:
        if not self.left:
            raise self.error
        data, self.left = self.left[:size], self.left[size:]
        return data


# --- Over the limit --------------------------------------------------------------------------


@pytest.mark.parametrize("reader", READERS)
def test_oversized_chunked_body_is_the_same_413_as_with_content_length(
    any_client: FlaskClient, reader: str
) -> None:
    response = post_streamed(any_client, READERS[reader](chunked(OVERSIZED)))

    problem = assert_problem(response, 413)
    reference = any_client.post(TASKS, data=OVERSIZED, content_type="application/json")
    assert without_request_id(problem) == without_request_id(assert_problem(reference, 413))
    assert task_count(any_client) == 0  # never processed on its first MiB


@pytest.mark.parametrize(("size", "status"), [(LIMIT, 201), (LIMIT + 1, 413)])
def test_the_limit_is_exact(any_client: FlaskClient, size: int, status: int) -> None:
    response = post_streamed(any_client, gunicorn_input(chunked(padded_json(size))))
    assert response.status_code == status


def test_reading_stops_one_byte_past_the_limit(any_client: FlaskClient) -> None:
    endless = EndlessInput()
    assert_problem(post_streamed(any_client, endless), 413)
    assert endless.served == LIMIT + 1  # the probe byte, nothing more
    assert endless.largest_read <= 64 * 1024  # streamed in pieces, never one huge read


def test_a_views_own_limit_applies_both_ways(any_app: Flask) -> None:
    @any_app.post("/length/<int:limit>")
    def length(limit: int) -> dict[str, int]:
        request.max_content_length = limit
        return {"length": len(request.get_data())}

    client = any_app.test_client()

    def post(limit: int, size: int) -> Any:
        return post_streamed(client, gunicorn_input(chunked(b"a" * size)), f"/length/{limit}")

    assert post(8, 8).json == {"length": 8}
    assert_problem(post(8, 9), 413)  # werkzeug alone returned the first 8 bytes
    assert post(2 * LIMIT, LIMIT + 10).json == {"length": LIMIT + 10}


# --- Broken framing --------------------------------------------------------------------------


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_chunked_framing_is_a_400_not_a_500(
    any_app: Flask,
    capture_log: Callable[[Flask], CapturedLog],
    reader: str,
    raw: bytes,
) -> None:
    log = capture_log(any_app)
    response = post_streamed(any_app.test_client(), READERS[reader](raw))

    problem = assert_problem(response, 400)
    assert problem["detail"] == MALFORMED_CHUNKED_DETAIL
    assert "Rejected a malformed request body" in log.text
    assert "ERROR" not in log.text
    assert "Traceback" not in log.text


def test_valid_chunk_extensions_are_accepted(any_client: FlaskClient) -> None:
    # gunicorn only: werkzeug's dev server rejects every chunk extension, valid or not.
    raw = b'e;name=value;flag\r\n{"title":"ok"}\r\n0\r\n\r\n'
    assert post_streamed(any_client, gunicorn_input(raw)).status_code == 201


@pytest.mark.parametrize("after", [0, LIMIT], ids=["at the start", "exactly at the limit"])
@pytest.mark.parametrize(
    "error", [ConnectionResetError(104, "reset"), TimeoutError("timed out"), OSError(5, "EIO")]
)
def test_socket_errors_stay_werkzeugs_client_disconnected(
    any_client: FlaskClient, error: OSError, after: int
) -> None:
    response = post_streamed(any_client, FailingInput(error, after))
    assert assert_problem(response, 400)["detail"] == ClientDisconnected.description


def test_a_bug_in_the_servers_reader_is_not_blamed_on_the_client(
    any_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    log = capture_log(any_app)
    response = post_streamed(any_app.test_client(), FailingInput(TypeError("reader bug")))
    assert assert_problem(response, 500)["detail"] == GENERIC_500_DETAIL
    assert "reader bug" in log.text  # the traceback is logged


# --- Wiring ----------------------------------------------------------------------------------


def test_streamed_bodies_keep_the_api_requests_json_checks(any_app: Flask) -> None:
    assert issubclass(any_app.request_class, BoundedBodyRequest)
    assert issubclass(any_app.request_class, ApiRequest)
    response = post_streamed(any_app.test_client(), gunicorn_input(chunked(b"[" * 100_000)))
    assert assert_problem(response, 400)["detail"].endswith("nested too deeply.")


def test_the_app_does_not_import_gunicorn() -> None:
    # It must run under any WSGI server: gunicorn's errors are looked up, never imported.
    tree = ast.parse((ROOT / "app" / "core" / "request_body.py").read_text())
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
    assert not [name for name in imported if name.split(".")[0] == "gunicorn"]


# --- For real: gunicorn, production profile, raw sockets -----------------------------------


@dataclass
class Server:
    port: int
    log_path: Path
    token: str  # the default workspace owner's access token, valid on this server

    @property
    def authorization(self) -> str:
        """The header line, for raw requests."""
        return f"Authorization: Bearer {self.token}\r\n"

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")


def _gunicorn_args() -> list[str]:
    from gunicorn.config import KNOWN_SETTINGS

    args = ["-m", "gunicorn", "--workers", "1", "--worker-class", "sync"]
    args += ["--bind", "127.0.0.1:0", "--graceful-timeout", "1"]
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        args.append("--no-control-socket")
    return [sys.executable, *args, "wsgi:app"]


def _wait_until_live(process: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + 20
    port = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited ({process.returncode}):\n{log_path.read_text()}")
        if port is None:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log_path.read_text())
            port = int(found.group(1)) if found else None
        if port is not None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/health/live")
                if connection.getresponse().status == 200:
                    return port
            except OSError:
                pass
            finally:
                connection.close()
        time.sleep(0.05)
    pytest.fail(f"gunicorn did not come up:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_path = tmp_path_factory.mktemp("gunicorn") / "server.log"
    # The production profile, and none of this shell's settings.
    settings = {name for name in dir(BaseConfig) if name.isupper()} | {"FLASK_DEBUG"}
    env = {name: value for name, value in os.environ.items() if name not in settings}
    server_settings = {
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(36),
        "JWT_KEYS_DIR": str(signing_keys_directory()),  # the key the owner's token is signed with
        "BACKUP_DIR": str(tmp_path_factory.mktemp("backups")),  # production requires one
        **fresh_databases(),
    }
    env |= server_settings
    # The default workspace's owner, written into the server's databases by an app of the same
    # settings (not make_app: it would start from fresh databases of its own).
    setup = create_app(server_settings)
    try:
        token = add_user(setup, "owner@example.com", role="owner").token
    finally:
        setup.extensions["shards"].dispose()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _gunicorn_args(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield Server(_wait_until_live(process, log_path), log_path, token)
    finally:
        process.send_signal(signal.SIGINT)  # quick shutdown
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(port: int, head: bytes, body: bytes, *, half_close: bool = False) -> RawResponse:
    """Send ``head`` + ``body`` while reading the response (a server may answer before the end)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:

        def send() -> None:
            try:
                sock.sendall(head + body)
                if half_close:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server answered and closed before taking the whole body

        writer = threading.Thread(target=send)
        writer.start()
        data = b""
        while b"\r\n\r\n" not in data:
            received = sock.recv(65536)
            assert received, f"connection closed before a response: {data!r}"
            data += received
        raw_head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }
        while len(rest) < int(headers.get("content-length", 0)):
            received = sock.recv(65536)
            assert received, "connection closed inside the response body"
            rest += received
        writer.join(5)
        return RawResponse(int(status_line.split()[1]), headers, rest)


def chunked_head(server: Server, path: str = TASKS) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"{server.authorization}Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


def assert_raw_problem(response: RawResponse, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["request_id"] == response.headers["x-request-id"]
    return problem


def raw_task_count(server: Server) -> int:
    head = f"GET {TASKS} HTTP/1.1\r\nHost: localhost\r\n{server.authorization}\r\n"
    response = exchange(server.port, head.encode(), b"")
    assert response.status == 200, response.body
    return int(response.json()["total"])


def assert_no_error_logged(text: str) -> None:
    assert '"level": "ERROR"' not in text
    assert "[ERROR]" not in text
    assert "Traceback" not in text


def test_gunicorn_refuses_an_oversized_chunked_body_with_413(gunicorn_server: Server) -> None:
    port, offset = gunicorn_server.port, gunicorn_server.log_size()
    before = raw_task_count(gunicorn_server)

    head = chunked_head(gunicorn_server)
    problem = assert_raw_problem(exchange(port, head, chunked(OVERSIZED)), 413)

    head = f"POST {TASKS} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    head += f"{gunicorn_server.authorization}Content-Length: {len(OVERSIZED)}\r\n\r\n"
    reference = assert_raw_problem(exchange(port, head.encode(), OVERSIZED), 413)
    assert without_request_id(problem) == without_request_id(reference)
    assert raw_task_count(gunicorn_server) == before
    assert_no_error_logged(gunicorn_server.log_since(offset))


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_gunicorn_answers_malformed_chunked_framing_with_400(
    gunicorn_server: Server, raw: bytes
) -> None:
    offset = gunicorn_server.log_size()
    response = exchange(gunicorn_server.port, chunked_head(gunicorn_server), raw, half_close=True)
    assert assert_raw_problem(response, 400)["detail"] == MALFORMED_CHUNKED_DETAIL
    assert_no_error_logged(gunicorn_server.log_since(offset))


def test_gunicorn_accepts_a_valid_chunked_body(gunicorn_server: Server) -> None:
    raw = chunked(b'{"title": "streamed"}', size=5)
    response = exchange(gunicorn_server.port, chunked_head(gunicorn_server), raw)
    assert response.status == 201
    assert response.json()["title"] == "streamed"
