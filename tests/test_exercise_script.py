"""scripts/exercise, run as a subprocess against a throwaway repository with a tiny app."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_checkpoints_script import interrupt, is_running, spawn, wait_for

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "exercise"
LOCK = "flask==3.1.0 \\\n    --hash=sha256:0000\n"
PYTHON_VERSION = "3.11\n"
SOLVED = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"
STUBBED = SOLVED.replace("    return a + b", "    raise NotImplementedError  # TODO(exercise)")
APP = """\
class _Response:
    status_code = 200


class _Client:
    def get(self, path):
        return _Response()


class _App:
    def test_client(self):
        return _Client()


def create_app(config=None):
    import app.calc  # noqa: F401  (the app must import)
    return _App()
"""
TESTS = """\
from app.calc import add, mul


def test_add():
    assert add(2, 3) == 5


def test_mul():
    assert mul(2, 3) == 6
"""
EXTEND_TEST = "from app.calc import sub\n\n\ndef test_sub():\n    assert sub(3, 2) == 1\n"


class Repo:
    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env

    def git(self, *args: str, cwd: Path | None = None, strip: bool = True) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd or self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip() if strip else result.stdout

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args],
            cwd=cwd or self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def write(self, relative: str, text: str) -> None:
        path = self.path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def exercise(self, exercise_id: str, toml: str, patch_edit: str | None = None) -> None:
        """Add exercises/<id>/; ``patch_edit`` is app/calc.py's text at the starting point."""
        folder = f"exercises/{exercise_id}"
        self.write(f"{folder}/README.md", f"# {exercise_id}\n")
        self.write(f"{folder}/exercise.toml", toml)
        if patch_edit is not None:
            self.write("app/calc.py", patch_edit)
            self.write(f"{folder}/start.patch", self.git("diff", strip=False))
            self.git("checkout", "--", "app/calc.py")

    def worktrees(self) -> list[str]:
        porcelain = self.git("worktree", "list", "--porcelain")
        return [line for line in porcelain.splitlines() if line.startswith("worktree ")]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_", "PYTEST_")) and key not in {"VENV_DIR", "APP_ENV"}
    }
    (tmp_path / "tmp").mkdir()
    clean.update(
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Committer",
        GIT_COMMITTER_EMAIL="committer@example.com",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        TMPDIR=str(tmp_path / "tmp"),
    )
    return clean


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> Repo:
    """ch-01 (a calculator app with two tests) and, after it, three exercises on main."""
    repo = Repo(tmp_path / "repo", env)
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    repo.write("requirements-dev.lock", LOCK)
    repo.write(".python-version", PYTHON_VERSION)
    repo.write("scripts/test", f'#!/usr/bin/env bash\nexec "{sys.executable}" -m pytest "$@"\n')
    (repo.path / "scripts" / "test").chmod(0o755)
    repo.write("app/__init__.py", APP)
    repo.write("app/calc.py", SOLVED)
    repo.write("tests/__init__.py", "")
    repo.write("tests/test_calc.py", TESTS)
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "ch-01: Calculator", "-m", "Checkpoint: ch-01")
    # The checkpoint's venv, as scripts/checkpoints names it: the smoke check runs its python.
    key = hashlib.sha256((LOCK + PYTHON_VERSION).encode()).hexdigest()[:16]
    venv_bin = tmp_path / "cache" / "taskmanager-api" / "venvs" / key / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)

    repo.exercise(
        "ch-01/add", 'title = "Addition"\ntests = ["tests/test_calc.py::test_add"]\n', STUBBED
    )
    repo.exercise(
        "ch-01/extend-sub",
        'title = "Subtraction"\nkind = "extend"\ntest_file = "test_extend_sub.py"\n',
    )
    repo.write("exercises/ch-01/extend-sub/test_extend_sub.py", EXTEND_TEST)
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "Add exercises")
    return repo


def test_list_shows_every_exercise_with_its_status(repo: Repo) -> None:
    result = repo.run("list")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[:4] for row in rows] == [
        ["ch-01/add", "core", "not", "started"],
        ["ch-01/extend-sub", "extend", "not", "started"],
    ]


def test_start_check_and_solution(repo: Repo, tmp_path: Path) -> None:
    tree = tmp_path / "work" / "add"
    started = repo.run("start", "ch-01/add", "--path", str(tree))
    assert started.returncode == 0, started.stderr
    assert str(tree) in started.stdout
    assert repo.git("status", "--porcelain") == ""  # the learner's checkout is untouched
    assert repo.git("branch", "--show-current", cwd=tree) == "exercise/ch-01/add"
    assert (tree / "app" / "calc.py").read_text() == STUBBED
    assert (tree / "exercises" / "ch-01" / "add" / "README.md").is_file()
    assert (tree / "scripts" / "exercise").is_file()
    assert repo.git("status", "--porcelain", cwd=tree) == ""  # committed as the start
    assert f"started at {tree}" in repo.run("list").stdout
    assert "you are here" in repo.run("list", cwd=tree).stdout
    assert repo.run("start", "ch-01/add").returncode == 0  # says where it already is

    failing = repo.run("check", cwd=tree)
    assert failing.returncode == 1
    assert "not done yet" in failing.stdout

    reference = repo.run("solution", "--no-color", cwd=tree)
    assert reference.returncode == 0, reference.stderr
    assert "-    raise NotImplementedError" in reference.stdout
    assert "+    return a + b" in reference.stdout
    assert "exercises/" not in reference.stdout
    # The same diff from the main checkout, without any worktree.
    assert repo.run("solution", "ch-01/add", "--no-color").stdout == reference.stdout

    (tree / "app" / "calc.py").write_text(SOLVED.replace("a + b", "b + a"))
    passing = repo.run("check", cwd=tree)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "ch-01/add: done" in passing.stdout
    mine = repo.run("solution", "--mine", "--no-color", cwd=tree).stdout
    assert "-    return a + b" in mine
    assert "+    return b + a" in mine


def test_start_of_an_extend_exercise_copies_its_test(repo: Repo, tmp_path: Path) -> None:
    tree = tmp_path / "sub"
    assert repo.run("start", "ch-01/extend-sub", "--path", str(tree)).returncode == 0
    assert (tree / "tests" / "test_extend_sub.py").read_text() == EXTEND_TEST
    assert repo.run("check", "--only", cwd=tree).returncode == 1
    (tree / "app" / "calc.py").write_text(SOLVED + "\n\ndef sub(a, b):\n    return a - b\n")
    assert repo.run("check", cwd=tree).returncode == 0
    assert "no reference solution" in repo.run("solution", cwd=tree).stdout


def test_check_outside_an_exercise_explains(repo: Repo) -> None:
    result = repo.run("check")
    assert result.returncode == 2
    assert "scripts/exercise start" in result.stderr
    assert repo.run("start", "ch-01/nope").returncode == 2


def test_verify_proves_each_exercise_honest_and_reports_a_vacuous_one(
    repo: Repo, tmp_path: Path
) -> None:
    honest = repo.run("verify")
    assert honest.returncode == 0, honest.stdout + honest.stderr
    assert "2 of 2 exercises honest" in honest.stdout

    # A patch that leaves the solution in place: its defining test passes at the "start".
    repo.exercise(
        "ch-01/vacuous",
        'title = "Vacuous"\ntests = ["tests/test_calc.py::test_mul"]\n',
        SOLVED.replace("def add", "# TODO(exercise)\ndef add"),
    )
    # A patch that breaks the import: the app must still start.
    repo.exercise(
        "ch-01/broken",
        'title = "Broken"\ntests = ["tests/test_calc.py::test_add"]\n',
        "def add(a, b) ->\n",
    )
    result = repo.run("verify", "ch-01")

    assert result.returncode == 1
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if "ch-01/" in line}
    assert " pass " in lines["ch-01/add"]
    assert " FAIL " in lines["ch-01/vacuous"]
    assert "test_mul: passes already" in result.stdout
    assert " FAIL " in lines["ch-01/broken"]
    assert "smoke check failed" in result.stdout
    assert "2 of 4 exercises honest" in result.stdout
    assert len(repo.worktrees()) == 1
    assert list((tmp_path / "tmp").iterdir()) == []


def test_verify_at_a_commit_stands_in_for_a_checkpoint_not_made_yet(repo: Repo) -> None:
    # ch-02's exercise is written before ch-02's checkpoint commit: HEAD stands in for it.
    repo.exercise(
        "ch-02/add-again", 'title = "Again"\ntests = ["tests/test_calc.py::test_add"]\n', STUBBED
    )
    assert repo.run("verify", "ch-02").returncode == 2  # no such checkpoint in the history
    result = repo.run("verify", "ch-02", "--at", "HEAD")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 of 1 exercises honest" in result.stdout
    assert repo.run("verify", "--at", "HEAD").returncode == 2  # which checkpoint, then?
    assert repo.run("verify", "ch-02", "--at", "nope").returncode == 2
    # Verifying everything (CI) skips the chapter that has no checkpoint yet, and says so.
    everything = repo.run("verify")
    assert everything.returncode == 0, everything.stdout + everything.stderr
    assert "ch-02: no checkpoint yet, skipped" in everything.stdout


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_verify_lets_pytest_clean_up_on_ctrl_c(repo: Repo, tmp_path: Path) -> None:
    started, cleaned, pid_file = tmp_path / "started", tmp_path / "cleaned", tmp_path / "sleep.pid"
    repo.exercise(
        "ch-02/add-again", 'title = "Again"\ntests = ["tests/test_calc.py::test_add"]\n', STUBBED
    )
    # Stands in for pytest, which cleans up on SIGINT; what it started must not outlive verify.
    repo.write(
        "scripts/test",
        f"#!/usr/bin/env bash\ntrap 'touch \"{cleaned}\"; exit 130' INT\n"
        f'sleep 30 &\necho $! > "{pid_file}"\ntouch "{started}"\nwait\n',
    )
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "ch-02 in progress")

    with spawn(
        [sys.executable, str(SCRIPT), "verify", "ch-02", "--at", "HEAD"], repo.path, repo.env
    ) as proc:
        wait_for(started, proc)
        stderr = interrupt(proc)

    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert cleaned.exists()
    assert not is_running(int(pid_file.read_text()))
    assert len(repo.worktrees()) == 1
    assert list((tmp_path / "tmp").iterdir()) == []
