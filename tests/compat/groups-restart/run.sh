#!/usr/bin/env bash
# A consumer group survives restarts of the agent (SIGKILL and SIGTERM).
#   tests/compat/groups-restart/run.sh [PATH_TO_SHOAL]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
shoal="${1:-$root/target/debug/shoal}"
py="${SHOAL_CACHE:-$HOME/.cache/shoal}/venv/bin/python"
if [[ ! -x "$py" ]] || ! "$py" -c 'import confluent_kafka' 2>/dev/null; then
  # The same venv and pinned clients as the Python compat suite.
  venv="${SHOAL_CACHE:-$HOME/.cache/shoal}/venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$root/tests/compat/python/requirements.txt"
fi
exec timeout 600 "$py" "$here/restart.py" "$shoal"
