#!/usr/bin/env bash
# Incremental fetch sessions (KIP-227) with Kafka 4.3.1's console consumer over 2,000
# partitions, seen in the agent's metrics (see run.py).
#
#   tests/compat/fetch-sessions/run.sh BOOTSTRAP METRICS_URL
#
# Last line: `fetch sessions: N failed`.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 BOOTSTRAP METRICS_URL (http://host:port/metrics)" >&2; exit 2; }
metrics_url="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
set -- "$1"
# shellcheck source=../lib/kafka4.sh
source "$here/../lib/kafka4.sh"
py="$(bash "$here/../python/venv.sh")"
"$py" "$here/run.py" "$bootstrap" "$metrics_url" "$libs"
