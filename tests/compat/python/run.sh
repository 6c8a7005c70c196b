#!/usr/bin/env bash
# Run the Python client compatibility tests (confluent-kafka, kafka-python)
# against a Kafka-protocol server.
#
#   tests/compat/python/run.sh HOST:PORT [extra pytest args...]
#
# The clients come from requirements.txt in a virtualenv set up by venv.sh.
# pytest's summary is the last line printed.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 BOOTSTRAP (host:port) [pytest args...]" >&2
    exit 2
fi
bootstrap="$1"
shift

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$(bash "$here/venv.sh")"

cd "$here"
export PYTHONDONTWRITEBYTECODE=1  # keep __pycache__ out of the work tree
export SHOAL_BOOTSTRAP="$bootstrap"
exec "$py" -m pytest -p no:cacheprovider "$@"
