#!/usr/bin/env bash
# Cluster mode: several `shoal agent`s sharing one etcd (metadata, registry) and one MinIO
# bucket (data), all on 127.0.0.1, driven by real clients (confluent-kafka / librdkafka).
#
#   tests/cluster/run.sh [SHOAL_BINARY] [TEST ...]     (default binary: target/debug/shoal)
#
# TEST: 1..6 or a name below; default all. The tests (tests/cluster/suite.py; the process
# harness is tests/cluster/cluster.py, the clients and checks tests/cluster/workload.py):
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
#                    the readers' group coordinator is a reader.
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
# keeps the temporary directory (logs of every agent, etcd, MinIO and the clients, and
# tN-name/group-TOPIC.json: each group assignment with the offsets it consumed and each
# completed commit). On a failure the tails of the logs are printed. Nothing outlives the
# run: children get a parent-death signal and are stopped at exit. `--selftest-sqlite`
# after the binary runs tests 1-3 on one SQLite agent without cluster flags: a check of
# the harness only.
#
# Last line: `cluster: N passed, M failed`; exit status non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shoal="${1:-$root/target/debug/shoal}"
[[ $# -gt 0 ]] && shift
[[ "$shoal" == /* ]] || shoal="$PWD/$shoal"
[[ -x "$shoal" ]] || { echo "cluster: no shoal binary at $shoal; run 'cargo build -p shoal' first" >&2; exit 2; }
limit="${CLUSTER_SECONDS:-420}"

fail() { echo "cluster: failed: $*"; exit 1; }

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

py="$(bash "$root/tests/compat/python/venv.sh")" || fail "set up the Python client venv"
echo "etcd: $etcd ($("$etcd" --version 2>/dev/null | head -1)); minio: $minio; python: $py"

# ------------------------------------------------------------------ run
# suite.py stops itself after $limit seconds (cleanup included); `timeout` is the last
# resort. A TERM/INT sent to this script is passed on. The work directory is removed here
# too, in case the suite could not do it itself.
work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-cluster.XXXXXX")"
cleanup() { [[ "${CLUSTER_KEEP:-}" == 1 ]] || rm -rf "$work"; }
trap cleanup EXIT
rc=0
timeout -k 30 $(( limit + 60 )) "$py" -u "$here/suite.py" --shoal "$shoal" --minio "$minio" \
  --etcd "$etcd" --seconds "$limit" --workdir "$work" "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT HUP
while :; do
  wait "$child" && rc=0 || rc=$?
  kill -0 "$child" 2>/dev/null || break
done
if (( rc == 124 || rc == 137 )); then
  echo "cluster: failed: killed (time limit of $(( limit + 60 ))s, or a signal)"
fi
exit "$rc"
