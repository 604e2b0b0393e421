"""The repository's own promises: pinned, hashed, URL-free locks and the chapter bookkeeping."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from app.version import __version__

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ["requirements.lock", "requirements-dev.lock"]


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_pins_every_package_with_hashes_and_no_urls(lock: str) -> None:
    text = (ROOT / lock).read_text()
    requirements = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", text, re.MULTILINE)
    assert requirements, "the lock pins packages"
    blocks = re.split(r"\n(?=[A-Za-z])", text)
    for block in blocks:
        if re.match(r"^[A-Za-z]", block):
            assert "--hash=sha256:" in block, f"{block.splitlines()[0]} has no hash"
    assert not re.search(r"(https?|file)://|--(extra-)?index-url|--find-links", text)


def test_locks_cover_the_declared_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for lock, declared in (
        ("requirements.lock", project["dependencies"]),
        (
            "requirements-dev.lock",
            project["dependencies"] + project["optional-dependencies"]["dev"],
        ),
    ):
        pinned = {
            name.lower()
            for name in re.findall(r"^([A-Za-z0-9_.\-]+)==", (ROOT / lock).read_text(), re.M)
        }
        for requirement in declared:
            name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0).lower()
            assert name in pinned, f"{name} is declared but not in {lock}; run scripts/lock"


def test_python_version_is_pinned_and_allowed() -> None:
    pinned = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", pinned)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    assert tuple(map(int, pinned.split("."))) >= (3, 11)


def test_version_names_the_checkpoint() -> None:
    chapter = int(__version__.split(".")[1])
    docs = sorted((ROOT / "docs" / "chapters").glob("[0-9][0-9]-*.md"))
    assert docs
    assert int(docs[-1].name[:2]) == chapter, "0.N.0 is the state at ch-N"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## ch-{chapter:02d} — ", changelog, re.MULTILINE)
    readme = (ROOT / "README.md").read_text()
    assert f"docs/chapters/{docs[-1].name}" in readme
