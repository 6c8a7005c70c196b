#!/usr/bin/env bash
# Client quotas with real Kafka 4.x tools and a real client against a Kafka-protocol server.
#
#   tests/compat/quotas/run.sh BOOTSTRAP
#
# kafka-configs (kafka.admin.ConfigCommand from Apache Kafka 4.3.1, jars via
# bench/kafka/fetch-kafka.sh): --alter/--describe/--delete-config for --entity-type
# clients and users, by name and --entity-default, a user+client pair, an unknown key
# refused. Then a confluent-kafka (librdkafka) producer over its producer_byte_rate is
# throttled (throttle callback fires, throughput bounded by the quota, nothing lost).
# Every quota it sets is removed again (also on failure), and defaults and the
# ANONYMOUS user only get values too large to throttle anyone, so the other suites
# sharing the server are not affected. Last line: `quotas: N passed, M failed`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/kafka4.sh
source "$here/../lib/kafka4.sh"
py="$(bash "$here/../python/venv.sh")"

configs() { java -cp "$libs/*" kafka.admin.ConfigCommand --bootstrap-server "$bootstrap" "$@" 2>&1; }

# Removes one quota key, if set (kafka-configs refuses to delete a key that is not set).
unset_quota() {
  local key="$1"; shift
  configs --alter "$@" --delete-config "$key" >/dev/null || true
}
cleanup() {
  unset_quota producer_byte_rate --entity-type clients --entity-name compat-quota-a
  unset_quota consumer_byte_rate --entity-type clients --entity-name compat-quota-a
  unset_quota request_percentage --entity-type clients --entity-default
  unset_quota consumer_byte_rate --entity-type users --entity-name ANONYMOUS
  unset_quota producer_byte_rate --entity-type users --entity-default
  unset_quota request_percentage --entity-type users --entity-name ANONYMOUS --entity-type clients --entity-name compat-quota-a
  unset_quota producer_byte_rate --entity-type clients --entity-name compat-throttled
}
trap cleanup EXIT

# check / absent NAME TEXT -- ConfigCommand args... (tests/compat/lib/expect.sh)
TOOL=configs
# shellcheck source=../lib/expect.sh
source "$here/../lib/expect.sh"

a=(--entity-type clients --entity-name compat-quota-a)
check "alter a client" "Completed updating config for client compat-quota-a" -- \
  --alter "${a[@]}" --add-config producer_byte_rate=1048576,consumer_byte_rate=2097152
check "describe a client" "Quota configs for client-id 'compat-quota-a' are consumer_byte_rate=2097152.0, producer_byte_rate=1048576.0" -- \
  --describe "${a[@]}"
check "alter the default client" "Completed updating default config for clients" -- \
  --alter --entity-type clients --entity-default --add-config request_percentage=1000000
check "describe the default client" "Quota configs for the default client-id are request_percentage=1000000.0" -- \
  --describe --entity-type clients --entity-default
check "describe every client" "Quota configs for client-id 'compat-quota-a'" -- \
  --describe --entity-type clients
check "alter the ANONYMOUS user" "Completed updating config for user ANONYMOUS" -- \
  --alter --entity-type users --entity-name ANONYMOUS --add-config consumer_byte_rate=1000000000000
check "alter the default user" "Completed updating default config for users" -- \
  --alter --entity-type users --entity-default --add-config producer_byte_rate=1000000000000
check "describe every user" "producer_byte_rate=1.0E12" -- \
  --describe --entity-type users
check "describe one user" "Quota configs for user-principal 'ANONYMOUS' are consumer_byte_rate=1.0E12" -- \
  --describe --entity-type users --entity-name ANONYMOUS
ua=(--entity-type users --entity-name ANONYMOUS --entity-type clients --entity-name compat-quota-a)
check "alter a user and client" "Completed updating config for user ANONYMOUS" -- \
  --alter "${ua[@]}" --add-config request_percentage=1000000
check "describe a user and client" "Quota configs for user-principal 'ANONYMOUS', client-id 'compat-quota-a' are request_percentage=1000000.0" -- \
  --describe "${ua[@]}"
check "delete one key" "Completed updating config for client compat-quota-a" -- \
  --alter "${a[@]}" --delete-config producer_byte_rate
check "the other key stays" "Quota configs for client-id 'compat-quota-a' are consumer_byte_rate=2097152.0" -- \
  --describe "${a[@]}"
absent "the deleted key is gone" "producer_byte_rate" -- --describe "${a[@]}"
check "an unknown key is refused" "Unexpected config names" -- \
  --alter "${a[@]}" --add-config producer_bytes_rate=5
cleanup
absent "cleaned up" "compat-quota-a" -- --describe --entity-type clients

# A real client throttled: 100 kB/s for a producer that wants far more.
quota=100000
check "quota for the throttled client" "Completed updating config for client compat-throttled" -- \
  --alter --entity-type clients --entity-name compat-throttled --add-config producer_byte_rate=$quota
if "$py" "$here/throttled_producer.py" "$bootstrap" compat-throttled "$quota" 8; then
  passed=$((passed + 1)); echo "ok   librdkafka producer throttled to its quota"
else
  failed=$((failed + 1)); echo "FAIL librdkafka producer throttled to its quota"
fi

echo "quotas: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
