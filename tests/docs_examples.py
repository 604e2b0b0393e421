"""Parse the curl transcripts in the docs so the test suite can run them.

A transcript is a ```console block: a ``$ curl -i ...`` command (``\\`` continues a line), then the
output curl prints: the status line, the headers worth showing, a blank line and the body. The
test checks the status, every header shown (``...`` inside a value matches anything), and the
JSON body, where ``"..."`` matches any value and objects may leave keys out.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

WILDCARD = "..."
BASE_URLS = ("http://127.0.0.1:5000", "http://localhost:5000")
_FENCE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass
class CurlExample:
    source: str  # file:line, for failure messages
    method: str
    path: str  # path plus query string
    headers: dict[str, str]
    body: bytes | None
    expected_status: int
    expected_headers: dict[str, str] = field(default_factory=dict)
    expected_body: str = ""


def _parse_command(command: str, source: str) -> tuple[str, str, dict[str, str], bytes | None]:
    args = shlex.split(command)
    assert args[0] == "curl", source
    method, url, headers, body = None, None, {}, None
    it = iter(args[1:])
    for arg in it:
        if arg in {"-i", "--include", "-s", "--silent", "-S", "-sS", "-si", "-is", "--show-error"}:
            continue
        if arg in {"-X", "--request"}:
            method = next(it)
        elif arg in {"-H", "--header"}:
            name, _, value = next(it).partition(":")
            headers[name.strip()] = value.strip()
        elif arg in {"-d", "--data", "--data-raw", "--data-binary"}:
            body = next(it).encode()
        elif arg == "--json":
            body = next(it).encode()
            headers.setdefault("Content-Type", "application/json")
            headers.setdefault("Accept", "application/json")
        elif arg.startswith("-"):
            raise AssertionError(f"{source}: the docs test does not understand curl option {arg}")
        else:
            url = arg
    assert url, f"{source}: no URL"
    assert url.startswith(BASE_URLS), f"{source}: examples must target {BASE_URLS[0]}"
    assert "-i" in args or "--include" in args or "-si" in args or "-is" in args, (
        f"{source}: use curl -i so the transcript shows the status"
    )
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return method or ("POST" if body is not None else "GET"), path, headers, body


def _parse_output(lines: list[str], source: str) -> tuple[int, dict[str, str], str]:
    assert lines, f"{source}: no output shown"
    assert lines[0].startswith("HTTP/"), f"{source}: output must start with HTTP/"
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    index = 1
    while index < len(lines) and lines[index].strip():
        name, _, value = lines[index].partition(":")
        headers[name.strip()] = value.strip()
        index += 1
    return status, headers, "\n".join(lines[index + 1 :]).strip()


def examples_in(path: Path) -> list[CurlExample]:
    text = path.read_text()
    found: list[CurlExample] = []
    for block in _FENCE.finditer(text):
        first_line = text[: block.start()].count("\n") + 2
        lines = block.group(1).splitlines()
        index = 0
        while index < len(lines):
            if not lines[index].startswith("$ curl"):
                index += 1
                continue
            source = f"{path.name}:{first_line + index}"
            command = lines[index][2:]
            while command.endswith("\\"):
                index += 1
                command = command[:-1] + " " + lines[index].strip()
            index += 1
            output_start = index
            while index < len(lines) and not lines[index].startswith("$ "):
                index += 1
            method, url_path, headers, body = _parse_command(command, source)
            status, expected_headers, expected_body = _parse_output(
                lines[output_start:index], source
            )
            found.append(
                CurlExample(
                    source, method, url_path, headers, body, status, expected_headers, expected_body
                )
            )
    return found


def matches(expected: Any, actual: Any) -> bool:
    """``expected`` as shown in the docs: objects may omit keys, ``"..."`` matches any value."""
    if expected == WILDCARD:
        return True
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def header_matches(expected: str, actual: str) -> bool:
    """Header values match exactly, except that ``...`` in the expected value matches anything."""
    pattern = ".*".join(re.escape(part) for part in expected.split(WILDCARD))
    return re.fullmatch(pattern, actual) is not None


def expected_json(example: CurlExample) -> Any:
    return json.loads(example.expected_body)
