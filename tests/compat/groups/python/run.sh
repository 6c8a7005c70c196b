#!/usr/bin/env bash
# Run the Python consumer-group compatibility tests (confluent-kafka, kafka-python)
# against a Kafka-protocol server with consumer groups.
#
#   tests/compat/groups/python/run.sh HOST:PORT [extra pytest args...]
#
# Uses the same virtualenv as tests/compat/python (${SHOAL_CACHE:-$HOME/.cache/shoal}/venv),
# installed from tests/compat/python/requirements.txt the first time and whenever that file
# changes. pytest's summary is the last line printed.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 BOOTSTRAP (host:port) [pytest args...]" >&2
    exit 2
fi
bootstrap="$1"
shift

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${SHOAL_CACHE:-$HOME/.cache/shoal}"
venv="$cache/venv"
python="${PYTHON:-python3}"

req="$here/../../python/requirements.txt"
stamp="$venv/.shoal-compat-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$cache"
    "$python" -m venv "$venv"
fi
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi

cd "$here"
export PYTHONDONTWRITEBYTECODE=1  # keep __pycache__ out of the work tree
export SHOAL_BOOTSTRAP="$bootstrap"
# pytest-timeout bounds each test; this bounds the whole run.
exec timeout -k 10 "${SHOAL_COMPAT_TIMEOUT:-480}" "$venv/bin/python" -m pytest -p no:cacheprovider "$@"
