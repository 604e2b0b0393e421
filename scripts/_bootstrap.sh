# Sourced by scripts/run and scripts/test. Makes "$VENV_DIR" match a lock file, installing only when
# the lock (or the interpreter) changed since the last install. Needs only python3 >= 3.11; uses uv
# when it is on PATH, else the standard venv module and pip with --require-hashes.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$ROOT/.venv}"   # scripts/checkpoints points this at a shared cache
if [ -d "$VENV_DIR/Scripts" ]; then VENV_BIN="$VENV_DIR/Scripts"; else VENV_BIN="$VENV_DIR/bin"; fi

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

_fingerprint() {  # the lock's content plus the tool that installed it
  local lock="$1"
  { cat "$lock" "$ROOT/.python-version"; echo "${2:-}"; } | _sha256
}

_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -d' ' -f1
  else shasum -a 256 | cut -d' ' -f1; fi
}

bootstrap() {
  local lock="$ROOT/$1" stamp="$VENV_DIR/.installed-lock" tool want python
  if command -v uv >/dev/null 2>&1 && [ "${TASKAPI_NO_UV:-}" != "1" ]; then tool=uv; else tool=pip; fi
  want="$(_fingerprint "$lock" "$tool")"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV_BIN/python" ]; then
    return 0
  fi
  echo "Installing $(basename "$lock") into ${VENV_DIR/#$ROOT\//} ($tool)..." >&2
  if [ "$tool" = uv ]; then
    [ -x "$VENV_BIN/python" ] || uv venv --quiet --python "$(cat "$ROOT/.python-version")" "$VENV_DIR"
    VIRTUAL_ENV="$VENV_DIR" uv pip sync --quiet --require-hashes "$lock"
  else
    python="$(_find_python)" || return 1
    [ -x "$VENV_BIN/python" ] || "$python" -m venv "$VENV_DIR"
    "$VENV_BIN/python" -m pip install --quiet --disable-pip-version-check \
      --require-hashes --no-deps -r "$lock"
  fi
  if [ -d "$VENV_DIR/Scripts" ]; then VENV_BIN="$VENV_DIR/Scripts"; else VENV_BIN="$VENV_DIR/bin"; fi
  echo "$want" >"$stamp"
}
