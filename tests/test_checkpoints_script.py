"""scripts/checkpoints, run as a subprocess against throwaway git repositories."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "checkpoints"
LOCK = "flask==3.1.0 \\\n    --hash=sha256:0000\n"
PYTHON_VERSION = "3.11\n"
PASSING = 'echo "3 passed in 0.01s"\n'


class Repo:
    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=self.env, capture_output=True, text=True, check=True
        )
        return result.stdout.strip()

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args],
            cwd=cwd or self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def fake_test(self, body: str) -> None:
        """Stage a scripts/test that the next checkpoint commit will carry."""
        script = self.path / "scripts" / "test"
        script.parent.mkdir(exist_ok=True)
        script.write_text("#!/usr/bin/env bash\n" + body)
        script.chmod(0o755)
        self.git("add", "scripts/test")

    def commit(self, *paragraphs: str) -> str:
        messages = [arg for paragraph in paragraphs for arg in ("-m", paragraph)]
        self.git("commit", "-q", "--allow-empty", *messages)
        return self.git("rev-parse", "HEAD")

    def checkpoint(self, number: int, title: str) -> str:
        name = f"ch-{number:02d}"
        return self.commit(f"{name}: {title}", "What this chapter adds.", f"Checkpoint: {name}")

    def worktrees(self) -> list[str]:
        porcelain = self.git("worktree", "list", "--porcelain")
        return [line for line in porcelain.splitlines() if line.startswith("worktree ")]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # Drop the caller's GIT_* (e.g. when run from a hook) and any user or system git config.
    clean = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    (tmp_path / "tmp").mkdir()
    clean.update(
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Committer",
        GIT_COMMITTER_EMAIL="committer@example.com",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        TMPDIR=str(tmp_path / "tmp"),  # lets tests see that verify leaves no temp dirs behind
    )
    return clean


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> Repo:
    path = tmp_path / "repo"
    path.mkdir()
    repo = Repo(path, env)
    repo.git("init", "-q", "-b", "main")
    (path / "requirements-dev.lock").write_text(LOCK)
    (path / ".python-version").write_text(PYTHON_VERSION)
    repo.fake_test(PASSING)
    repo.git("add", ".")
    repo.commit("Scaffold")
    return repo


def table(output: str) -> list[list[str]]:
    """Rows of the table at the end of `output`, split on runs of two or more spaces."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("checkpoint "))
    return [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1 :]]


def test_help_describes_each_subcommand(repo: Repo) -> None:
    result = repo.run("--help")
    assert result.returncode == 0
    for command in ("list", "verify", "tag"):
        assert command in result.stdout


def test_list_finds_checkpoints_by_trailer_in_chapter_order(repo: Repo) -> None:
    ch02 = repo.checkpoint(2, "Models")
    ch01 = repo.checkpoint(1, "Hello API")
    repo.commit("Notes", "Checkpoint: ch-03 comes next.", "Nothing else here.")  # not a trailer
    repo.commit("ch-04: wip", "Not a Checkpoint yet.")
    repo.commit("Soon", "Checkpoint: ch-05 soon")  # a trailer, but its value is not a name
    ch10 = repo.checkpoint(10, "Deploy")
    repo.git("tag", "-a", "ch-01", ch01, "-m", "Chapter 01: Hello API")
    repo.git("tag", "ch-02", ch01)  # lightweight, and at the wrong commit

    result = repo.run("list", cwd=repo.path / "scripts")  # any directory inside the repo works

    assert result.returncode == 0, result.stderr
    short = {sha: repo.git("rev-parse", "--short", sha) for sha in (ch01, ch02, ch10)}
    assert table(result.stdout) == [
        ["ch-01", short[ch01], "ok", "Hello API"],
        ["ch-02", short[ch02], f"moved -> {short[ch01]}", "Models"],
        ["ch-10", short[ch10], "missing", "Deploy"],
    ]


def test_newest_commit_wins_when_a_trailer_repeats(repo: Repo) -> None:
    repo.checkpoint(1, "First try")
    newer = repo.checkpoint(1, "Second try")

    rows = table(repo.run("list").stdout)

    assert rows == [["ch-01", repo.git("rev-parse", "--short", newer), "missing", "Second try"]]


def test_no_checkpoints(repo: Repo, tmp_path: Path, env: dict[str, str]) -> None:
    assert repo.run("list").stdout == "no checkpoints yet\n"
    verify = repo.run("verify")
    assert (verify.returncode, verify.stdout) == (0, "no checkpoints to verify\n")

    unborn = Repo(tmp_path / "unborn", env)
    unborn.path.mkdir()
    unborn.git("init", "-q", "-b", "main")
    result = unborn.run("list")
    assert (result.returncode, result.stdout) == (0, "no checkpoints yet\n")


def test_tag_creates_missing_keeps_ok_and_refuses_to_move(repo: Repo) -> None:
    ch01 = repo.checkpoint(1, "Hello API")
    ch02 = repo.checkpoint(2, "Models")
    ch03 = repo.checkpoint(3, "Auth")
    repo.git("tag", "-a", "ch-02", ch02, "-m", "Chapter 02: Models")
    repo.git("tag", "-a", "ch-03", ch01, "-m", "Chapter 03: Auth")
    before = {name: repo.git("rev-parse", name) for name in ("ch-02", "ch-03")}

    result = repo.run("tag")

    assert result.returncode == 1
    short = {sha: repo.git("rev-parse", "--short", sha) for sha in (ch01, ch02, ch03)}
    assert [row[::2] for row in table(result.stdout)] == [
        ["ch-01", "created"],
        ["ch-02", "ok"],
        ["ch-03", f"MISMATCH (tag at {short[ch01]}, checkpoint at {short[ch03]})"],
    ]
    assert repo.git("cat-file", "-t", "ch-01") == "tag"
    assert repo.git("rev-parse", "ch-01^{commit}") == ch01
    assert repo.git("tag", "-l", "--format=%(contents:subject)", "ch-01") == "Chapter 01: Hello API"
    assert {name: repo.git("rev-parse", name) for name in ("ch-02", "ch-03")} == before

    repo.git("tag", "-d", "ch-03")
    again = repo.run("tag")
    assert again.returncode == 0
    assert [row[2] for row in table(again.stdout)] == ["ok", "ok", "created"]
    assert repo.git("rev-parse", "ch-03^{commit}") == ch03


def test_verify_runs_the_checkpoints_own_tests_on_defaults(repo: Repo, tmp_path: Path) -> None:
    probe = tmp_path / "probe.txt"
    repo.fake_test(
        f'{{ echo "args=$*"; echo "cwd=$PWD"; echo "venv=$VENV_DIR";'
        f' echo "db=${{DATABASE_URL-unset}} env=${{APP_ENV-unset}}'
        f' test_db=${{TEST_DATABASE_URL-unset}} replicas=${{REPLICA_URLS-unset}}"; }} > "{probe}"\n'
        + PASSING
    )
    repo.checkpoint(1, "Hello API")
    repo.env.update(
        DATABASE_URL="postgresql://elsewhere/db",
        APP_ENV="production",
        TEST_DATABASE_URL="postgresql+psycopg://elsewhere/postgres",
        REPLICA_URLS="main=postgresql+psycopg://replica/db",
    )

    result = repo.run("verify")

    assert result.returncode == 0, result.stdout + result.stderr
    name, verdict, passed, seconds = table(result.stdout)[0]
    assert (name, verdict, passed) == ("ch-01", "pass", "3")
    float(seconds)
    assert "ch-01" in result.stderr  # progress line
    key = hashlib.sha256((LOCK + PYTHON_VERSION).encode()).hexdigest()[:16]
    lines = probe.read_text().splitlines()
    assert lines[0] == "args=-q -p no:cacheprovider"
    assert lines[1] != f"cwd={repo.path}"  # ran in a separate worktree
    assert lines[2] == f"venv={tmp_path / 'cache' / 'taskmanager-api' / 'venvs' / key}"
    assert lines[3] == "db=unset env=unset test_db=unset replicas=unset"
    assert len(repo.worktrees()) == 1
    assert list((tmp_path / "tmp").iterdir()) == []


def test_verify_fails_when_no_tests_ran(repo: Repo) -> None:
    repo.fake_test('echo "no tests ran in 0.01s"\n')
    repo.checkpoint(1, "Hello API")

    result = repo.run("verify")

    assert result.returncode == 1
    assert "no tests ran" in result.stdout
    assert table(result.stdout)[0][:3] == ["ch-01", "FAIL", "0"]


def test_verify_failure_shows_output_tail_and_names_select(repo: Repo) -> None:
    repo.checkpoint(1, "Hello API")
    repo.fake_test(
        'for i in $(seq -w 1 100); do echo "line $i"; done\n'
        'echo "E   assert 1 == 2"\necho "1 failed, 2 passed in 0.10s"\nexit 1\n'
    )
    repo.checkpoint(2, "Models")

    result = repo.run("verify")

    assert result.returncode == 1
    assert "E   assert 1 == 2" in result.stdout
    assert "line 100" in result.stdout
    assert "line 010" not in result.stdout  # only the tail
    assert [row[:3] for row in table(result.stdout)] == [
        ["ch-01", "pass", "3"],
        ["ch-02", "FAIL", "2"],
    ]
    assert len(repo.worktrees()) == 1

    only_first = repo.run("verify", "ch-01")
    assert only_first.returncode == 0
    assert [row[0] for row in table(only_first.stdout)] == ["ch-01"]


def test_verify_unknown_checkpoint_exits_2(repo: Repo) -> None:
    repo.checkpoint(1, "Hello API")

    result = repo.run("verify", "ch-01", "ch-99")

    assert result.returncode == 2
    assert "ch-99" in result.stderr
    assert len(repo.worktrees()) == 1


def spawn(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """`cmd` in the background, with SIGINT at its default whatever this process inherited.

    A suite started as a background job of a non-interactive shell (`./scripts/test &` in a script)
    inherits SIGINT ignored, and so would a script it starts: Python keeps an ignored SIGINT
    ignored. A handled signal is reset to its default in a new program: handle it while starting.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def start_verify(repo: Repo) -> subprocess.Popen[str]:
    return spawn([sys.executable, str(SCRIPT), "verify"], repo.path, repo.env)


def wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    """Until the checkpoint's tests create `path`; fail at once if verify ended instead."""
    deadline = time.monotonic() + 30  # generous for a loaded machine; normally well under 1 s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            stdout, stderr = proc.communicate()
            pytest.fail(f"{path.name} never appeared (exit {proc.returncode}):\n{stdout}{stderr}")
        time.sleep(0.02)


def interrupt(proc: subprocess.Popen[str]) -> str:
    """Send SIGINT as the terminal's Ctrl-C would; verify's stderr once it has exited."""
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"verify ignored SIGINT:\n{stderr}")
    return stderr


def is_running(pid: int) -> bool:
    """Whether `pid` is alive; a zombie nobody has reaped yet (no init in a container) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): fall back to asking the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_verify_removes_worktree_on_ctrl_c(repo: Repo, tmp_path: Path) -> None:
    started = tmp_path / "started"
    repo.fake_test(f'touch "{started}"\nexec sleep 30\n')
    repo.checkpoint(1, "Hello API")

    with start_verify(repo) as proc:
        wait_for(started, proc)
        assert len(repo.worktrees()) == 2  # the checkpoint's worktree exists while it runs
        stderr = interrupt(proc)

    assert proc.returncode == 130
    assert "interrupted" in stderr
    assert len(repo.worktrees()) == 1
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_ctrl_c_lets_the_tests_clean_up_and_stops_what_they_started(
    repo: Repo, tmp_path: Path
) -> None:
    started, cleaned, pid_file = tmp_path / "started", tmp_path / "cleaned", tmp_path / "sleep.pid"
    # Like pytest, the checkpoint's tests clean up on SIGINT (atexit, session fixtures). The
    # background sleep ignores SIGINT (a non-interactive shell's `&`) and holds the output pipe.
    repo.fake_test(
        f"trap 'touch \"{cleaned}\"; exit 130' INT\n"
        f'sleep 30 &\necho $! > "{pid_file}"\ntouch "{started}"\nwait\n'
    )
    repo.checkpoint(1, "Hello API")

    with start_verify(repo) as proc:
        wait_for(started, proc)
        stderr = interrupt(proc)

    assert proc.returncode == 130, stderr
    assert cleaned.exists()  # SIGINT reached the tests, and they had time to act on it
    assert not is_running(int(pid_file.read_text()))
    assert len(repo.worktrees()) == 1


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_second_ctrl_c_kills_tests_that_do_not_stop(repo: Repo, tmp_path: Path) -> None:
    started, got_sigint, pid_file = tmp_path / "started", tmp_path / "got", tmp_path / "tests.pid"
    repo.fake_test(
        f'trap \'touch "{got_sigint}"\' INT\necho $$ > "{pid_file}"\ntouch "{started}"\n'
        "while :; do sleep 0.1; done\n"
    )
    repo.checkpoint(1, "Hello API")

    with start_verify(repo) as proc:
        wait_for(started, proc)
        proc.send_signal(signal.SIGINT)
        wait_for(got_sigint, proc)  # the tests ignore the first Ctrl-C ...
        assert proc.poll() is None
        stderr = interrupt(proc)  # ... but not the second, well before the grace period ends

    assert proc.returncode == 130, stderr
    assert "Ctrl-C again" in stderr
    assert not is_running(int(pid_file.read_text()))
    assert len(repo.worktrees()) == 1
    assert list((tmp_path / "tmp").iterdir()) == []
