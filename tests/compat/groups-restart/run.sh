#!/usr/bin/env bash
# A consumer group survives restarts of the agent (SIGKILL and SIGTERM).
#   tests/compat/groups-restart/run.sh [PATH_TO_SHOAL]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
shoal="${1:-$root/target/debug/shoal}"
py="$(bash "$root/tests/compat/python/venv.sh")"
exec timeout 600 "$py" "$here/restart.py" "$shoal"
