# Sourced by the scripts: make sure uv is there and the locked environment is installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export UV_PYTHON_DOWNLOADS=never
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
UV="uv"
command -v uv >/dev/null 2>&1 || UV="python3 -m uv"
# Bytecode compiled once at install: every shipline command then starts without compiling the
# modules it imports (PYTHONDONTWRITEBYTECODE, common on CI machines, would make each one pay).
$UV sync --quiet --frozen --python python3.11 --all-extras --compile-bytecode
.venv/bin/python -m compileall -q -j 0 src >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
