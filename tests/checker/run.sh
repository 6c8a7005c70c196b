#!/usr/bin/env bash
# Shoal's Jepsen-style checker: 3 agents on etcd and MinIO, a real-client workload
# (confluent-kafka: idempotent, plain and transactional producers; consumer groups with
# manual and automatic commits, some read_committed; and a transactional producer with the
# Java client, Kafka 4.x), faults one after another, then the checks against a read-back of
# the whole log. See docs/reliability.md.
#
#   tests/checker/run.sh [--minutes N] [--faults LIST] [--seed S] [BINARY]
#
# BINARY defaults to target/debug/shoal. --minutes (default 3) is the whole run, cluster
# start and read-back included: the short form (default faults
# kill-agent,pause-agent,partition-agent-etcd,skew-agent) takes about 3 minutes and is
# what CI runs; the long form is e.g. `--minutes 30 --faults all`, cycling through every
# fault: kill-agent kill-etcd kill-minio pause-agent pause-etcd pause-minio
# partition-agent-etcd partition-agent-minio partition-agent-agent skew-agent.
# Other checker.py flags (--agents, --hold, --pause, --recover, --skew) are passed on.
#
# Installs what is missing, as tests/cluster/run.sh does: etcd (Debian etcd-server), MinIO
# (go install), the Python client venv, and libfaketime (Debian faketime) for skew-agent. A
# fault whose tool cannot be installed is reported as not run, and the run fails. The Kafka
# 4.x client jars come from bench/kafka/fetch-kafka.sh 4 (Maven Central, cached); without
# them or without java (11 or later) the run fails.
#
# Environment: CHECKER_DEBUG=eos,msg logs the idempotent producers' librdkafka debug
# contexts to clients.log. CHECKER_KEEP=1 keeps the work directory (logs of every process, clients.log,
# history.json: every operation); CHECKER_REPORT (default checker-report.txt in the current
# directory) is where the report is written.
# Exit status: 0 when no anomaly was found, every fault ran and the read-back was complete.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

minutes=3; faults=""; pass=(); shoal=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --faults) faults="$2"; shift 2 ;;
    --seed|--agents|--hold|--pause|--recover|--skew) pass+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    -*) echo "checker: unknown option $1" >&2; exit 2 ;;
    *) shoal="$1"; shift ;;
  esac
done
shoal="${shoal:-$root/target/debug/shoal}"
[[ "$shoal" == /* ]] || shoal="$PWD/$shoal"
[[ -x "$shoal" ]] || { echo "checker: no shoal binary at $shoal; run 'cargo build -p shoal' first" >&2; exit 2; }
fail() { echo "checker: failed: $*"; exit 1; }

SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
apt_install() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null; }
}
etcd="$(command -v etcd || true)"
if [[ -z "$etcd" ]]; then
  echo "installing etcd (Debian etcd-server)"
  apt_install etcd-server || fail "apt-get install etcd-server"
  etcd="$(command -v etcd || echo /usr/bin/etcd)"
fi
minio="$(command -v minio || true)"
if [[ -z "$minio" ]]; then
  command -v go >/dev/null || fail "go is needed to install MinIO (Go >= 1.24)"
  gobin="$(go env GOBIN)"; [[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
  minio="$gobin/minio"
  if [[ ! -x "$minio" ]]; then
    echo "installing MinIO with go install (about 4 minutes on 2 cores the first time)"
    go install "github.com/minio/minio@${SHOAL_MINIO_VERSION:-latest}" || fail "go install minio"
  fi
fi
if [[ -z "$faults" || "$faults" == all || "$faults" == *skew* ]]; then
  if ! compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null \
     && [[ ! -e /usr/lib/faketime/libfaketime.so.1 ]]; then
    echo "installing libfaketime (Debian faketime)"
    # Not fatal here: checker.py reports skew-agent as not run, and the run fails.
    apt_install faketime || echo "checker: could not install faketime"
  fi
fi
py="$(bash "$root/tests/compat/python/venv.sh")" || fail "set up the Python client venv"
command -v java >/dev/null || fail "java (11 or later) is needed for the Java transactional producer"
kafka_libs="$(bash "$root/bench/kafka/fetch-kafka.sh" 4)" || fail "fetch the Kafka 4.x client jars (bench/kafka/fetch-kafka.sh 4)"

"$py" "$here/selftest.py" || fail "the checker's self-test (tests/checker/selftest.py)"

work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-checker.XXXXXX")"
cleanup() { [[ "${CHECKER_KEEP:-}" == 1 ]] && echo "checker: kept $work" || rm -rf "$work"; }
trap cleanup EXIT
report="${CHECKER_REPORT:-$PWD/checker-report.txt}"
args=(--shoal "$shoal" --minio "$minio" --etcd "$etcd" --kafka-libs "$kafka_libs"
      --minutes "$minutes" --workdir "$work/run" --report "$report" --keep)
[[ -z "$faults" ]] || args+=(--faults "$faults")
status=0
"$py" -u "$here/checker.py" "${args[@]}" ${pass[@]+"${pass[@]}"} || status=$?
echo "checker: report written to $report"
exit "$status"
