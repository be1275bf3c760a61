# Shared set-up for scripts/demo and scripts/test: a virtual environment in .venv with the project
# installed (editable), refreshed only when pyproject.toml or scripts/build-tools.txt changed. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

is_root() { [ "$(id -u)" = "0" ]; }

apt_install() {
    # apt_install PACKAGE... : install the missing Debian packages when root, or say which are missing.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if is_root && command -v apt-get >/dev/null; then
        echo "avila-edge: installing Debian packages: ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "avila-edge: missing Debian packages: ${missing[*]}" >&2
        echo "avila-edge: install them with: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
}

ensure_venv() {
    # ensure_venv EXTRAS : create .venv and install the project with EXTRAS ("" or "[test]").
    local extras="$1"
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv || exit 1
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.avila-edge-installed" want
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/build-tools.txt" | sha256sum | cut -d' ' -f1)$extras"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "avila-edge: installing Python packages into .venv ..." >&2
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
        # the build tools' exact versions (scripts/build-tools.txt): the shipped models rebuild byte for byte
        "$VENV/bin/python" -m pip install -q -c "$ROOT/scripts/build-tools.txt" -e "$ROOT$extras"
        echo "$want" > "$stamp"
    fi
}
