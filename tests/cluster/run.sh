#!/usr/bin/env bash
# Cluster mode: several `shoal agent`s sharing one etcd (metadata, registry) and one MinIO
# bucket (data), all on 127.0.0.1, driven by real clients (confluent-kafka / librdkafka).
#
#   tests/cluster/run.sh [SHOAL_BINARY] [TEST ...]     (default binary: target/debug/shoal)
#
# TEST: 1..7 or a name below; default all. Tests 1-6 are tests/cluster/suite.py (the process
# harness is tests/cluster/cluster.py, the clients and checks tests/cluster/workload.py);
# 7 runs the real-client suites of tests/compat through tests/cluster/serve.py:
#   1 basic          3 agents, a 6-partition topic; 3 idempotent producers and a 3-member
#                    consumer group, each client bootstrapped to a different agent. Every
#                    acknowledged (partition, offset, value) is consumed with that value,
#                    nothing unacknowledged is consumed, offsets are consecutive within each
#                    assignment, committed offsets end at the end offsets, a group-less
#                    read-back holds exactly the acknowledged records. Metadata from every
#                    agent lists all 3 agents; leaders are spread over more than one; the
#                    objects are in the bucket and the keys in etcd under the test's prefix;
#                    a SIGTERMed agent exits 0 and leaves Metadata at once.
#   2 agent-kill     the same load, paced; kill -9 the group's coordinator mid-stream, later a
#                    second agent: Metadata drops each within the lease time, clients fail
#                    over, the group resumes from committed offsets (no assignment starts
#                    before a commit completed earlier), nothing acknowledged is missing or
#                    duplicated; the killed agents restart and serve everything.
#   3 store-restart  the same load, paced; kill -9 etcd, start it again 3 s later on the same
#                    port and data directory; then the same with MinIO: acknowledgements
#                    resume, no agent exits, nothing acknowledged is lost.
#   4 agent-groups   2 agents `--agent-group writers --roles produce,jobs`, 2 `--agent-group
#                    readers --roles fetch`: Metadata from each side lists only its side;
#                    produce through writers, a consumer group through readers gets every
#                    record; metrics show produce only on writers, fetch only on readers;
#                    the readers' waiting fetches were woken by the writers' commits (etcd
#                    watch); the readers' group coordinator is a reader; the writers (job
#                    interval 2 s, --metadata-history 1s) compacted etcd's history.
#   5 zones          3 agents `--az a`, `a`, `b`: client.id `app,shoal_az=b` sees only the b
#                    agent, `shoal_az=a` the two a agents, no shoal_az (or an unknown zone)
#                    all three; a zone-b client bootstrapped to zone-a agents produces and
#                    consumes through the b agent only.
#   6 chunk-cache    the distributed chunk cache on cold reads. 3 agents, one zone,
#                    `--compaction-target-bytes 0 --batch-max-bytes 1MiB`; ~20k records of
#                    ~1 KiB into a 6-partition topic through ONE agent alone (so every object
#                    holds every partition: with all up, each agent's objects would hold only
#                    the partitions it leads), objects of one 4 MiB chunk each (sizes from the
#                    bucket listing). All 3 start with empty caches; a group-less read-back
#                    (each partition from its leader) returns every acknowledged record;
#                    summed over the agents (/metrics, during the read): peer hits > 0,
#                    served >= peer hits, no fallback, object-store GETs (hedges left out)
#                    <= 1.5 x chunks (without the peer cache: leaders x chunks). Then kill -9
#                    one agent and restart the other two at once (empty caches, the dead one
#                    still registered until its lease ends, so owner of a third of the
#                    chunks): a new read-back still returns every record (the fallback GETs
#                    are reported), no agent panics.
#   7 clients      the third-party client suites in their own languages, each against its
#                    own fresh cluster (its own etcd, MinIO and 3 agents, tests/cluster/serve.py):
#                    java (tests/compat/jvm basic: the Java client, bootstrap.servers = all 3
#                    agents), go (tests/compat/go: franz-go), groups (tests/compat/groups:
#                    consumer groups with Java, confluent-kafka, kafka-python, franz-go), txn
#                    (tests/compat/txn: idempotence and transactions with Java, confluent-kafka,
#                    franz-go), consumer-protocol (tests/compat/consumer-protocol: KIP-848
#                    groups with the Java 4.x consumer and librdkafka, bootstrap = all 3
#                    agents); groups and txn take one HOST:PORT, so they get one agent's address
#                    and find the others through Metadata. Each suite passes as a whole; after
#                    it every agent must still run, exit 0 on SIGTERM and have no panic in its
#                    log. About 3 minutes on 2 cores (java ~15 s, go ~5 s, groups ~60 s, txn
#                    ~80 s, plus ~2 s of cluster start and stop each). Needs java, mvn and go
#                    (the Maven projects build offline from ~/.m2 after the first time).
# Agents run with --batch-timeout 50ms; each test has its own etcd prefix and bucket prefix
# (etcd://127.0.0.1:P/tN-name, s3://shoal-cluster/tN-name). About 2 minutes on 2 cores
# with a debug build (tests 2 and 3 take half a minute each: their producers are paced;
# test 6 about 20 s, half of it waiting for the killed agent's lease).
#
# Installs what is missing (idempotent): etcd from Debian (etcd-server, /usr/bin/etcd 3.4),
# MinIO with `go install github.com/minio/minio@${SHOAL_MINIO_VERSION:-latest}` as
# tests/s3/run.sh does, and the shared Python client venv of tests/compat/python/venv.sh
# (${SHOAL_CACHE:-$HOME/.cache/shoal}/venv, confluent-kafka pinned there).
#
# Environment: CLUSTER_SECONDS (420: the suite stops itself then; `timeout` kills it 60 s
# later), CLUSTER_RECORDS (30000 per test; test 6 produces 2/3 of it), CLUSTER_RATE_BASIC (1500 records/s per
# producer in test 1), CLUSTER_RATE (350 in tests 2-3), CLUSTER_OUTAGE (3 s), CLUSTER_KEEP=1
# keeps the temporary directory (suite/: logs of every agent, etcd, MinIO and the clients,
# and suite/tN-name/group-TOPIC.json: each group assignment with the offsets it consumed and
# each completed commit; clients-NAME/: test 7's cluster for suite NAME). On a failure the tails of the logs are printed. Nothing outlives the
# run: children get a parent-death signal and are stopped at exit. `--selftest-sqlite`
# after the binary runs tests 1-3 on one SQLite agent without cluster flags: a check of
# the harness only (test 7 is then left out).
# Test 7: CLUSTER_CLIENTS (the suites to run, default "java go groups txn"; "python" and
# "kcat", tests/compat/python and kcat, may be added), CLUSTER_CLIENTS_SECONDS (480: limit
# per suite, cluster start and stop included; serve.py then stops the suite and it fails),
# SHOAL_COMPAT_TIMEOUT (240 here: each Java program's and pytest run's own limit) and every
# other variable the suites take (tests/compat/README.md).
#
# Last line: `cluster: N passed, M failed`, counting the checks of tests 1-6 and each client
# suite of test 7 as one (test 7 prints its own `cluster-clients: N passed, M failed`, with
# the time of each suite, just before); exit status non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shoal="${1:-$root/target/debug/shoal}"
[[ $# -gt 0 ]] && shift
[[ "$shoal" == /* ]] || shoal="$PWD/$shoal"
[[ -x "$shoal" ]] || { echo "cluster: no shoal binary at $shoal; run 'cargo build -p shoal' first" >&2; exit 2; }
limit="${CLUSTER_SECONDS:-420}"

fail() { echo "cluster: failed: $*"; exit 1; }

# Which tests: 1-6 go to suite.py, 7 (clients) is run here.
suite_args=(); run_suite=0; run_clients=0; named=0; selftest=0
for arg in "$@"; do
  case "$arg" in
    7|clients) run_clients=1; named=1 ;;
    --selftest-sqlite) selftest=1; suite_args+=("$arg") ;;
    -*) suite_args+=("$arg") ;;
    *) run_suite=1; named=1; suite_args+=("$arg") ;;
  esac
done
(( named )) || { run_suite=1; run_clients=1; }
if (( selftest )); then run_suite=1; run_clients=0; fi
clients="${CLUSTER_CLIENTS:-java go groups txn consumer-protocol}"
# KIP-848 groups (the consumer-protocol suite): a killed member's partitions move after
# 8 s rather than Kafka's 45; the agents inherit these.
export SHOAL_CONSUMER_GROUP_SESSION_TIMEOUT="${SHOAL_CONSUMER_GROUP_SESSION_TIMEOUT:-8s}"
export SHOAL_CONSUMER_GROUP_HEARTBEAT_INTERVAL="${SHOAL_CONSUMER_GROUP_HEARTBEAT_INTERVAL:-1s}"
client_limit="${CLUSTER_CLIENTS_SECONDS:-480}"
if (( run_clients )); then
  for c in $clients; do
    case "$c" in java|go|groups|txn|python|kcat|consumer-protocol) ;;
      *) fail "unknown client suite '$c' in CLUSTER_CLIENTS (java go groups txn python kcat consumer-protocol)" ;; esac
  done
fi

# ------------------------------------------------------------------ prerequisites
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
etcd="$(command -v etcd || true)"
if [[ -z "$etcd" ]]; then
  echo "installing etcd (Debian etcd-server)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server >/dev/null \
    || fail "apt-get install etcd-server"
  etcd="$(command -v etcd || echo /usr/bin/etcd)"
fi
[[ -x "$etcd" ]] || fail "no etcd binary"
# Debian's package starts an etcd service on 2379 where systemd runs; this suite starts
# its own on free ports and does not touch that one.

command -v curl >/dev/null || fail "curl is needed (signed S3 requests to MinIO)"

minio="$(command -v minio || true)"
if [[ -z "$minio" ]]; then
  command -v go >/dev/null || fail "go is needed to install MinIO (Go >= 1.24)"
  gobin="$(go env GOBIN)"; [[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
  minio="$gobin/minio"
  if [[ ! -x "$minio" ]]; then
    mod="github.com/minio/minio@${SHOAL_MINIO_VERSION:-latest}"
    echo "installing MinIO with 'go install $mod' (go $(go env GOVERSION)); about 4 minutes on 2 cores the first time"
    go install "$mod" || fail "go install $mod (needs Go >= 1.24)"
  fi
fi

if (( run_clients )); then
  for tool in java mvn go; do
    command -v "$tool" >/dev/null || fail "$tool is needed by the client suites (test 7; scripts/install-test-deps.sh)"
  done
  if [[ " $clients " == *" kcat "* ]]; then
    command -v kcat >/dev/null || fail "kcat is needed by CLUSTER_CLIENTS=...kcat"
  fi
fi

py="$(bash "$root/tests/compat/python/venv.sh")" || fail "set up the Python client venv"
echo "etcd: $etcd ($("$etcd" --version 2>/dev/null | head -1)); minio: $minio; python: $py"

# ------------------------------------------------------------------ run
# suite.py stops itself after $limit seconds (cleanup included); `timeout` is the last
# resort. A TERM/INT sent to this script is passed on (to suite.py or serve.py) and no
# further step starts. The work directory is removed here too, in case the suite could not
# do it itself.
work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-cluster.XXXXXX")"
cleanup() { [[ "${CLUSTER_KEEP:-}" == 1 ]] || rm -rf "$work"; }
trap cleanup EXIT
child=""; stopping=0
trap 'stopping=1; [[ -z "$child" ]] || kill -TERM "$child" 2>/dev/null || true' TERM INT HUP
# Runs "$@" in the background (so the trap above can pass signals on) and waits for it.
run_child() {
  local status=0
  "$@" &
  child=$!
  while :; do
    wait "$child" && status=0 || status=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=""
  return "$status"
}

rc=0
suite_passed=0; suite_failed=0
if (( run_suite )); then
  counts="$work/suite-counts"
  run_child timeout -k 30 $(( limit + 60 )) "$py" -u "$here/suite.py" --shoal "$shoal" \
    --minio "$minio" --etcd "$etcd" --seconds "$limit" --workdir "$work/suite" \
    --counts "$counts" ${suite_args[@]+"${suite_args[@]}"} || rc=$?
  if (( rc == 124 || rc == 137 )); then
    echo "cluster: failed: killed (time limit of $(( limit + 60 ))s, or a signal)"
  fi
  if [[ -s "$counts" ]]; then
    read -r suite_passed suite_failed <"$counts"
  elif (( rc != 0 )); then
    suite_failed=1  # suite.py did not get to its summary
  fi
fi

# ------------------------------------------------------------------ 7 clients
# Each suite against a fresh 3-agent cluster of its own (serve.py: etcd, MinIO, agents,
# Metadata listing all 3, the suite, SIGTERM and the agents' exit status and logs).
if (( run_clients && ! stopping )); then
  export SHOAL_COMPAT_TIMEOUT="${SHOAL_COMPAT_TIMEOUT:-240}"
  c_passed=0; c_failed=0; c_lines=(); c_start=$SECONDS
  for c in $clients; do
    (( stopping )) && break
    case "$c" in
      java)   cmd=(bash "$root/tests/compat/jvm/run.sh" basic "{bootstrap}") ;;
      go)     cmd=(bash "$root/tests/compat/go/run.sh" "{bootstrap1}") ;;
      groups) cmd=(bash "$root/tests/compat/groups/run.sh" "{bootstrap1}") ;;
      txn)    cmd=(bash "$root/tests/compat/txn/run.sh" "{bootstrap1}") ;;
      python) cmd=(bash "$root/tests/compat/python/run.sh" "{bootstrap1}") ;;
      kcat)   cmd=(bash "$root/tests/compat/kcat/run.sh" "{bootstrap}") ;;
      consumer-protocol) cmd=(bash "$root/tests/compat/consumer-protocol/run.sh" "{bootstrap}") ;;
    esac
    echo; echo "==> test 7 clients: $c (tests/compat/${c/#java/jvm basic}) against a fresh 3-agent cluster"
    t0=$SECONDS; status=0
    run_child timeout -k 30 $(( client_limit + 90 )) "$py" -u "$here/serve.py" --agents 3 \
      --shoal "$shoal" --minio "$minio" --etcd "$etcd" --batch-timeout 50ms \
      --seconds "$client_limit" --workdir "$work/clients-$c" --name "clients-$c" \
      -- "${cmd[@]}" || status=$?
    took=$(( SECONDS - t0 ))
    if (( status == 0 )); then
      c_passed=$((c_passed + 1)); c_lines+=("$(printf '  %-7s passed  %4ds' "$c" "$took")")
    else
      c_failed=$((c_failed + 1)); c_lines+=("$(printf '  %-7s FAILED  %4ds (status %d)' "$c" "$took" "$status")")
    fi
  done
  echo; echo "==> test 7 clients: summary ($(( SECONDS - c_start ))s)"
  [[ ${#c_lines[@]} -eq 0 ]] || printf '%s\n' "${c_lines[@]}"
  (( stopping )) && echo "  (stopped by a signal)"
  echo "cluster-clients: $c_passed passed, $c_failed failed"
  (( c_failed == 0 && ! stopping )) || rc=1
  echo "cluster: $(( suite_passed + c_passed )) passed, $(( suite_failed + c_failed )) failed"
fi
exit "$rc"
