#!/usr/bin/env bash
# The web console in a real browser: starts `shoal demo` on free loopback ports, loads
# every console page in headless Chromium (playwright-core, check.mjs), checks the plots
# and tables show the demo's real, moving numbers, saves screenshots under
# target/console-screenshots/, then stops the demo with SIGTERM and checks it exits
# cleanly and removes its temporary data directory.
#
#   tests/console/run.sh [PATH_TO_SHOAL_BINARY]     (default: target/debug/shoal)
#
# Needs Debian's chromium and `npm ci` here (scripts/install-test-deps.sh does both).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shoal="${1:-$root/target/debug/shoal}"
[[ -x "$shoal" ]] || { echo "no shoal binary at $shoal; run 'cargo build' first" >&2; exit 2; }
command -v chromium >/dev/null || [[ -n "${CHROMIUM:-}" ]] || { echo "no chromium; run scripts/install-test-deps.sh" >&2; exit 2; }
[[ -d "$here/node_modules/playwright-core" ]] || (cd "$here" && npm ci --no-audit --no-fund --silent)

shots="$root/target/console-screenshots"
log="$(mktemp "${TMPDIR:-/tmp}/shoal-console-test.XXXXXX")"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$log"
}
trap cleanup EXIT

# Ephemeral ports for Kafka and the console; the banner says which were taken. The
# timeout is a safety net: the demo never outlives the test by long.
timeout 120 "$shoal" demo --no-open --listen 127.0.0.1:0 --console-listen 127.0.0.1:0 \
  --rate 200 >"$log" 2>&1 &
pid=$!
url=""
for _ in $(seq 200); do
  url="$(sed -n 's#^  console  *\(http://127\.0\.0\.1:[0-9]*/\)$#\1#p' "$log" | head -1)"
  [[ -n "$url" ]] && break
  kill -0 "$pid" 2>/dev/null || { echo "shoal demo exited early:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$url" ]] || { echo "shoal demo printed no console URL:" >&2; cat "$log" >&2; exit 1; }
data="$(sed -n 's#.*demo data in \(.*\), removed on exit.*#\1#p' "$log" | head -1)"
[[ -n "$data" && -d "$data" ]] || { echo "the demo's data directory is not named or missing ($data):" >&2; cat "$log" >&2; exit 1; }
echo "console: shoal demo serving $url (data in $data)"

status=0
node "$here/check.mjs" "$url" "$shots" || status=1

# Ctrl-C's path: SIGTERM stops the producer, the consumer and the agent; the temporary
# data directory goes with them.
kill -TERM "$pid"
exited=""
for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || { exited=1; break; }; sleep 0.1; done
if [[ -z "$exited" ]]; then
  echo "FAIL shoal demo did not exit within 20 s of SIGTERM" >&2; status=1
else
  code=0; wait "$pid" || code=$?
  pid=""
  if [[ $code -ne 0 ]]; then echo "FAIL shoal demo exited with status $code" >&2; status=1; else echo "ok   shoal demo exited cleanly on SIGTERM"; fi
  if [[ -e "$data" ]]; then echo "FAIL the demo left its data directory $data behind" >&2; status=1; else echo "ok   the demo removed its data directory"; fi
fi
if [[ $status -ne 0 ]]; then echo "demo log:" >&2; cat "$log" >&2; fi
exit $status
