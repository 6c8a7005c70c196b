#!/usr/bin/env bash
# Runs every real-client compatibility suite against a fresh Shoal playground.
#
#   tests/compat/run-all.sh [PATH_TO_SHOAL_BINARY]     (default: target/debug/shoal)
#
# Starts the playground on a free loopback port in a temporary data dir, runs the Java
# (kafka-clients 4.3.1, and the basic suite again with 3.9.1), Python (confluent-kafka +
# kafka-python), Go (franz-go), kcat, consumer-group, KIP-848 consumer-protocol, fetch-session,
# transaction, client-quota, ACL (kafka-acls) and replica-tool (kafka-reassign-partitions,
# kafka-leader-election, kafka-log-dirs) suites, the security suite (its own
# secure playground: TLS, SASL, ACLs) and the compacted-topic suite (its own playground),
# then franz-go's
# own integration suite as a measurement (its pass count is reported, not required).
# The playground is stopped on exit whatever happens. Exit code: non-zero if any of the
# required suites failed. Last line: `compat: N passed, M failed` (suites).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shoal="${1:-$root/target/debug/shoal}"
[[ -x "$shoal" ]] || { echo "no shoal binary at $shoal; run 'cargo build' first" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
data="$(mktemp -d "${TMPDIR:-/tmp}/shoal-compat.XXXXXX")"
port="$(free_port)"
metrics_port="$(free_port)"
log="$data/shoal.log"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [[ "${KEEP_DATA:-}" != 1 ]]; then rm -rf "$data"; else echo "data and log kept in $data" >&2; fi
}
trap cleanup EXIT

# A safety net: the playground never outlives this script by more than its time budget.
# KIP-848 groups: a killed member's partitions move after 8 s rather than Kafka's 45.
SHOAL_CONSUMER_GROUP_SESSION_TIMEOUT=8s SHOAL_CONSUMER_GROUP_HEARTBEAT_INTERVAL=1s \
timeout "${SHOAL_COMPAT_MAX_SECONDS:-2400}" "$shoal" playground --data-dir "$data/d" \
  --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  grep -q "Shoal is listening" "$log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "shoal exited early:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
grep -q "Shoal is listening" "$log" || { echo "shoal did not start:" >&2; cat "$log" >&2; exit 1; }
bootstrap="127.0.0.1:$port"
echo "compat: Shoal playground on $bootstrap (log: $log)"

passed=0; failed=0; failures=()
suite() {
  local name="$1"; shift
  echo; echo "==> compat suite: $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}
suite java "$here/jvm/run.sh" basic "$bootstrap"
# The same checks with a client from before Kafka 4.0: older clients must keep working.
suite java-3.9 env SHOAL_KAFKA_CLIENTS=3.9.1 "$here/jvm/run.sh" basic "$bootstrap"
suite python "$here/python/run.sh" "$bootstrap"
suite go "$here/go/run.sh" "$bootstrap"
suite kcat "$here/kcat/run.sh" "$bootstrap"
suite groups "$here/groups/run.sh" "$bootstrap"
suite consumer-protocol "$here/consumer-protocol/run.sh" "$bootstrap"
suite txn "$here/txn/run.sh" "$bootstrap"
suite quotas "$here/quotas/run.sh" "$bootstrap"
suite acls "$here/acls/run.sh" "$bootstrap"
suite admin-tools "$here/admin-tools/run.sh" "$bootstrap"
suite fetch-sessions "$here/fetch-sessions/run.sh" "$bootstrap" "http://127.0.0.1:$metrics_port/metrics"
# Starts its own playground with TLS, SASL and ACLs (the flags differ from the shared one).
suite security "$here/security/run.sh" "$shoal"
# Start their own server with a short cleaner interval, and restart it: a playground,
# then an agent on a throw-away etcd.
suite compaction "$here/compaction/run.sh" "$shoal"
suite compaction-etcd "$here/compaction/run.sh" "$shoal" --etcd

if [[ "${SHOAL_SKIP_FRANZ_SUITE:-}" != 1 ]]; then
  echo; echo "==> franz-go's own integration suite (measurement; see docs/compatibility.md)"
  "$here/franz-go-suite.sh" "$bootstrap" || echo "franz-go suite could not run" >&2
fi

if ! kill -0 "$pid" 2>/dev/null; then
  echo "shoal died during the compatibility run:" >&2; tail -50 "$log" >&2
  failed=$((failed + 1)); failures+=("shoal-alive")
fi
echo
[[ ${#failures[@]} -eq 0 ]] || echo "failed suites: ${failures[*]}"
echo "compat: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
