# Sourced by scripts/run and scripts/test. Makes "$VENV_DIR" match a lock file, installing only when
# the lock (or the interpreter) changed since the last install. Needs only python3 >= 3.11; uses uv
# when it is on PATH, else the standard venv module and pip with --require-hashes.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$ROOT/.venv}"   # scripts/checkpoints points this at a shared cache

_venv_bin() {  # Windows venvs (Git Bash) keep executables in Scripts/
  if [ -d "$VENV_DIR/Scripts" ]; then VENV_BIN="$VENV_DIR/Scripts"; else VENV_BIN="$VENV_DIR/bin"; fi
}
_venv_bin

_find_python() {
  local candidate
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: Python >= 3.11 is required (python3 not found or too old); see docs/setup.md" >&2
  return 1
}

_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1
  else shasum -a 256 | cut -d' ' -f1; fi
}

_fingerprint() {  # a lock's content plus the Python version it targets
  cat "$ROOT/$1" "$ROOT/.python-version" | _sha256
}

# bootstrap LOCK [ALSO_ACCEPTED_LOCK]: install LOCK unless the venv already holds LOCK or, when
# given, ALSO_ACCEPTED_LOCK (the dev lock is a superset of the runtime lock at the same versions).
bootstrap() {
  local lock="$1" also="${2:-}" stamp="$VENV_DIR/.installed-lock" installed="" python
  [ -f "$stamp" ] && [ -x "$VENV_BIN/python" ] && installed="$(cat "$stamp")"
  if [ -n "$installed" ]; then
    [ "$installed" = "$(_fingerprint "$lock")" ] && return 0
    [ -n "$also" ] && [ "$installed" = "$(_fingerprint "$also")" ] && return 0
  fi
  if command -v uv >/dev/null 2>&1 && [ "${TASKAPI_NO_UV:-}" != "1" ]; then
    echo "Installing $lock into $VENV_DIR (uv)..." >&2
    [ -x "$VENV_BIN/python" ] || uv venv --quiet --python "$(cat "$ROOT/.python-version")" "$VENV_DIR"
    _venv_bin
    VIRTUAL_ENV="$VENV_DIR" uv pip sync --quiet --require-hashes "$ROOT/$lock"
  else
    echo "Installing $lock into $VENV_DIR (pip)..." >&2
    python="$(_find_python)" || return 1
    [ -x "$VENV_BIN/python" ] || "$python" -m venv "$VENV_DIR"
    _venv_bin
    "$VENV_BIN/python" -m pip install --quiet --disable-pip-version-check \
      --require-hashes --no-deps -r "$ROOT/$lock"
  fi
  _fingerprint "$lock" >"$stamp"
}
