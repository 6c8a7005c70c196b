#!/usr/bin/env bash
# Compacted topics through confluent-kafka against its own Shoal playground.
#
#   tests/compat/compaction/run.sh [PATH_TO_SHOAL] [--etcd]   (default target/debug/shoal)
#
# --etcd: `shoal agent` on a throw-away etcd (the `etcd` binary on PATH) instead of the
# playground's SQLite.
#
# See README.md. Last line: `compaction: passed` or `compaction: failed: REASON`.
# Environment: COMPACTION_RECORDS (100000), COMPACTION_KEYS (1000),
#              COMPACTION_SECONDS (300, hard limit), COMPACTION_KEEP=1 (keep the temp dir).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
shoal="${1:-$root/target/debug/shoal}"
mode="${2:-}"
[[ "$shoal" == /* ]] || shoal="$PWD/$shoal"
[[ -x "$shoal" ]] || { echo "compaction: failed: no shoal binary at $shoal"; exit 1; }
py="$(bash "$root/tests/compat/python/venv.sh")"
limit="${COMPACTION_SECONDS:-300}"
exec timeout -k 10 $(( limit + 30 )) "$py" -u "$here/harness.py" "$shoal" $mode
