# Sourced by the scripts: make sure uv is there and the locked environment is installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export UV_PYTHON_DOWNLOADS=never
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
UV="uv"
command -v uv >/dev/null 2>&1 || UV="python3 -m uv"
$UV sync --quiet --frozen --python python3.11 --all-extras
export PATH="$PWD/.venv/bin:$PATH"
