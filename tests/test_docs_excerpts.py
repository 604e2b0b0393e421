"""Code excerpts in the chapter docs are the real code: every line of a ```python block appears
in the project's Python files (``...`` marks an elision). Excerpts drift silently otherwise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "docs" / "chapters").glob("*.md"))
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ELISION = {"...", "# ...", "…"}


def _code_lines() -> set[str]:
    lines: set[str] = set()
    for folder in ("app", "tests", "scripts", "migrations"):
        for path in (ROOT / folder).rglob("*.py"):
            lines.update(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    lines.update(line.strip() for line in (ROOT / "wsgi.py").read_text().splitlines())
    return lines


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_python_excerpt_is_in_the_code(chapter: Path) -> None:
    code = _code_lines()
    text = chapter.read_text(encoding="utf-8")
    missing = []
    for block in _BLOCK.finditer(text):
        start = text.count("\n", 0, block.start()) + 2
        for offset, line in enumerate(block.group(1).splitlines()):
            stripped = line.strip()
            if stripped and stripped not in _ELISION and stripped not in code:
                missing.append(f"{chapter.name}:{start + offset}: {stripped}")
    assert not missing, "excerpts that are not in the code:\n" + "\n".join(missing)
