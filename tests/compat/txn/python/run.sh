#!/usr/bin/env bash
# Run the Python transaction / idempotent-producer compatibility tests (confluent-kafka)
# against a Kafka-protocol server with transactions.
#
#   tests/compat/txn/python/run.sh HOST:PORT [extra pytest args...]
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
py="$(bash "$here/../../python/venv.sh")"

cd "$here"
export PYTHONDONTWRITEBYTECODE=1  # keep __pycache__ out of the work tree
export SHOAL_BOOTSTRAP="$bootstrap"
# pytest-timeout bounds each test; this bounds the whole run.
exec timeout -k 10 "${SHOAL_COMPAT_TIMEOUT:-300}" "$py" -m pytest -p no:cacheprovider "$@"
