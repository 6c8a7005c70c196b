#!/usr/bin/env bash
# Ensures the virtualenv with the pinned Python clients (requirements.txt beside this
# file) exists under ${SHOAL_CACHE:-$HOME/.cache/shoal}/venv, reinstalling whenever
# requirements.txt changes, and prints the venv's python. Every Python-based suite
# (python/, groups/python/, groups-restart/, kcat/) gets its interpreter from here.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${SHOAL_CACHE:-$HOME/.cache/shoal}"
venv="$cache/venv"
req="$here/requirements.txt"
stamp="$venv/.shoal-compat-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$cache"
    "${PYTHON:-python3}" -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
    echo "$want" > "$stamp"
fi
echo "$venv/bin/python"
