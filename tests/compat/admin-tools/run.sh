#!/usr/bin/env bash
# Apache Kafka 4.3.1's replica and log-directory tools against a Kafka-protocol server
# with no replicas (Shoal): each must get a clear, well-formed answer, never a closed
# connection.
#
#   tests/compat/admin-tools/run.sh BOOTSTRAP
#
# kafka-reassign-partitions (--list, --generate, --execute, --verify, --cancel),
# kafka-leader-election (preferred and unclean, known and unknown partitions) and
# kafka-log-dirs (--describe), and kafka-configs on group configs (KIP-848) and broker
# configs (read-only flags), jars via bench/kafka/fetch-kafka.sh. Uses one topic,
# compat-admin-tools, deleted again at the end. Last line: `admin-tools: N passed, M failed`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/kafka4.sh
source "$here/../lib/kafka4.sh"
work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-admin-tools.XXXXXX")"
topic=compat-admin-tools

kafka() { java -cp "$libs/*" "$@" --bootstrap-server "$bootstrap" 2>&1; }
topics() { kafka org.apache.kafka.tools.TopicCommand "$@"; }
reassign() {
  # One line of output with the exit status appended, so a check can ask for both.
  local out rc=0
  out="$(kafka org.apache.kafka.tools.reassign.ReassignPartitionsCommand "$@")" || rc=$?
  echo "$(tr '\n' ' ' <<<"$out" | sed 's/  */ /g; s/ $//') rc=$rc"
}
elect() { kafka org.apache.kafka.tools.LeaderElectionCommand "$@"; }
logdirs() { kafka org.apache.kafka.tools.LogDirsCommand "$@"; }
configs() {
  local out rc=0
  out="$(kafka kafka.admin.ConfigCommand "$@")" || rc=$?
  echo "$(tr '\n' ' ' <<<"$out" | sed 's/  */ /g; s/ $//') rc=$rc"
}
cleanup() { topics --delete --topic "$topic" >/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# check / absent NAME TEXT -- TOOL ARGS... (tests/compat/lib/expect.sh)
# shellcheck source=../lib/expect.sh
source "$here/../lib/expect.sh"

TOOL=topics
topics --delete --topic "$topic" >/dev/null 2>&1 || true
check "create the topic" "Created topic $topic." -- --create --topic "$topic" --partitions 3

# The node id the server reports (kafka-reassign-partitions checks the ids it is given).
node="$(topics --describe --topic "$topic" | sed -n 's/.*Leader: \([0-9]*\).*/\1/p' | head -1)"
[[ -n "$node" ]] || { echo "FAIL could not read a leader id for $topic"; exit 1; }
printf '{"version":1,"partitions":[{"topic":"%s","partition":0,"replicas":[%s]}]}\n' \
  "$topic" "$node" >"$work/reassign.json"
printf '{"version":1,"topics":[{"topic":"%s"}]}\n' "$topic" >"$work/move.json"

TOOL=reassign
check "list reassignments: none" "No partition reassignments found." -- --list
check "generate a plan" "Proposed partition reassignment configuration" -- \
  --generate --topics-to-move-json-file "$work/move.json" --broker-list "$node"
check "execute: refused, saying why" "there are no replicas to move or elect" -- \
  --execute --reassignment-json-file "$work/reassign.json"
# --verify and --cancel also clear replication throttles (IncrementalAlterConfigs
# deletes on the broker and the topic): the tool must exit 0.
check "verify: complete" "Reassignment of partition $topic-0 is completed. Clearing broker-level throttles on broker $node Clearing topic-level throttles on topic $topic rc=0" -- \
  --verify --reassignment-json-file "$work/reassign.json"
check "cancel: nothing active" "None of the specified partition reassignments are active. None of the specified partition moves are active.Clearing broker-level throttles on broker $node Clearing topic-level throttles on topic $topic rc=0" -- \
  --cancel --reassignment-json-file "$work/reassign.json"

TOOL=elect
check "preferred election, all partitions" "Valid replica already elected for partitions" -- \
  --election-type preferred --all-topic-partitions
check "preferred election, one partition" "Valid replica already elected for partitions $topic-1" -- \
  --election-type preferred --topic "$topic" --partition 1
check "unclean election of an unknown partition" "UnknownTopicOrPartitionException" -- \
  --election-type unclean --topic "$topic" --partition 7

TOOL=logdirs
check "describe log dirs" '"logDir":"object-storage' -- --describe
check "describe log dirs of a topic" '"partitions":[]' -- --describe --topic-list "$topic"

# KIP-848 group configs, and broker configs as the agent's read-only flags.
TOOL=configs
group=compat-admin-tools-group
check "set a group's session timeout" "Completed updating config for group $group. rc=0" -- \
  --alter --entity-type groups --entity-name "$group" \
  --add-config consumer.session.timeout.ms=20000,consumer.heartbeat.interval.ms=2000
check "describe the group's configs" "consumer.session.timeout.ms=20000" -- \
  --describe --entity-type groups --entity-name "$group"
check "a heartbeat interval over the session timeout is refused" "must be less than" -- \
  --alter --entity-type groups --entity-name "$group" --add-config consumer.heartbeat.interval.ms=30000
check "delete the group's configs" "Completed updating config for group $group. rc=0" -- \
  --alter --entity-type groups --entity-name "$group" \
  --delete-config consumer.session.timeout.ms,consumer.heartbeat.interval.ms
check "describe a broker: read-only flags" "num.partitions=" -- \
  --describe --entity-type brokers --entity-name "$node" --all
check "alter a broker config: refused, naming the flag" "--default-partitions" -- \
  --alter --entity-type brokers --entity-name "$node" --add-config num.partitions=5

echo "admin-tools: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
