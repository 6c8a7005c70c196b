#!/usr/bin/env bash
# Exactly-once consume-transform-produce across crashes of the processor and the server.
#
#   tests/compat/txn-restart/run.sh [PATH_TO_SHOAL]   own Shoal playground (default target/debug/shoal)
#   tests/compat/txn-restart/run.sh --kafka           own throw-away Apache Kafka 3.9.1 instead
#
# See README.md. Last line: `txn-restart: passed` or `txn-restart: failed: REASON`.
# Environment: TXN_RESTART_RECORDS (20000), TXN_RESTART_KILLS (3 processor SIGKILLs),
#              TXN_RESTART_SERVER_DOWN (3: seconds between the server SIGKILL and its restart),
#              TXN_RESTART_SECONDS (240, hard limit), TXN_RESTART_KEEP=1 (keep the temp dir).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
if [[ "${1:-}" == "--kafka" ]]; then
  args=(kafka)
else
  # A relative binary path is relative to the caller's directory.
  shoal="${1:-$root/target/debug/shoal}"
  [[ "$shoal" == /* ]] || shoal="$PWD/$shoal"
  args=(shoal "$shoal")
fi
py="$(bash "$root/tests/compat/python/venv.sh")"
limit="${TXN_RESTART_SECONDS:-240}"
cd "$here"
rc=0
# harness.py stops itself after $limit seconds; `timeout` is the last resort. A TERM/INT
# sent to this script is passed on (the harness then stops its server and cleans up).
timeout -k 10 $(( limit + 30 )) "$py" -u "$here/harness.py" "${args[@]}" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT HUP
while :; do
  wait "$child" && rc=0 || rc=$?
  kill -0 "$child" 2>/dev/null || break
done
if (( rc == 124 || rc == 137 )); then
  echo "txn-restart: failed: killed after $(( limit + 30 ))s"
fi
exit "$rc"
