#!/usr/bin/env bash
# A single Shoal agent against a real S3 server (MinIO) on loopback.
#
#   tests/s3/run.sh [PATH_TO_SHOAL_BINARY]      (default: target/debug/shoal)
#
# Installs MinIO with `go install github.com/minio/minio@${SHOAL_MINIO_VERSION:-latest}`
# when it is neither on PATH nor in Go's bin directory (needs Go >= 1.24; about 4 minutes
# on 2 cores the first time, seconds with Go's build cache warm), starts it on free
# loopback ports in a temporary directory, creates a bucket with a SigV4-signed request (curl --aws-sigv4), and starts
# `shoal agent` with SQLite metadata and s3://BUCKET/shoal-test. Then real clients
# (confluent-kafka, in tests/s3/check.py) produce keyed records with acks=all and read
# every acknowledged one back; the agent is killed with SIGKILL, restarted on the same
# bucket and database, and everything is read back again, now from S3 GETs (its cache is
# empty). Metrics and a signed bucket listing confirm the objects really went through S3.
# MinIO and the agent are stopped on exit whatever happens, and never outlive the script
# by more than SHOAL_S3_MAX_SECONDS (default 900).
#
# Last line: `s3: N passed, M failed`; exit code non-zero on any failure.
# KEEP_DATA=1 keeps the temporary directory (MinIO data, logs) for a look afterwards.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shoal="${1:-$root/target/debug/shoal}"
[[ -x "$shoal" ]] || { echo "no shoal binary at $shoal; run 'cargo build -p shoal' first" >&2; exit 2; }
shoal="$(cd "$(dirname "$shoal")" && pwd)/$(basename "$shoal")"
max_seconds="${SHOAL_S3_MAX_SECONDS:-900}"
records="${SHOAL_S3_RECORDS:-3000}"

passed=0; failed=0; failures=()
ok() { echo "  ok: $1"; passed=$((passed + 1)); }
bad() { echo "  FAILED: $1"; failed=$((failed + 1)); failures+=("$1"); }
summary() {
  echo
  [[ ${#failures[@]} -eq 0 ]] || echo "failed checks: ${failures[*]}"
  echo "s3: $passed passed, $failed failed"
}
# A failure that leaves nothing further to test.
abort() { bad "$1"; summary; exit 1; }
step() { echo; echo "==> $*"; }

# ------------------------------------------------------------------ prerequisites
step "MinIO"
minio="$(command -v minio || true)"
if [[ -z "$minio" ]]; then
  command -v go >/dev/null || abort "go is needed to install MinIO (Go >= 1.24)"
  gobin="$(go env GOBIN)"; [[ -n "$gobin" ]] || gobin="$(go env GOPATH)/bin"
  minio="$gobin/minio"
  if [[ ! -x "$minio" ]]; then
    mod="github.com/minio/minio@${SHOAL_MINIO_VERSION:-latest}"
    echo "installing MinIO with 'go install $mod' (go $(go env GOVERSION)); about 4 minutes on 2 cores the first time"
    t0=$SECONDS
    go install "$mod" || abort "go install $mod (needs Go >= 1.24)"
    echo "MinIO built in $((SECONDS - t0))s"
  fi
fi
echo "using $minio"

# The pinned clients of the Python compat suite, in its shared venv.
python="$(bash "$here/../compat/python/venv.sh")" || abort "set up the Python client venv"
command -v curl >/dev/null || abort "curl is needed"

# ------------------------------------------------------------------ MinIO
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
tmp="$(mktemp -d "${TMPDIR:-/tmp}/shoal-s3.XXXXXX")"
minio_pid=""; agent_tpid=""; agent_pid=""

# Stops a process started under `timeout` (which passes SIGTERM on to its child).
stop() {
  local pid="$1"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  stop "$agent_tpid"
  [[ -z "$agent_pid" ]] || kill -KILL "$agent_pid" 2>/dev/null || true
  stop "$minio_pid"
  if [[ "${KEEP_DATA:-}" == 1 ]]; then echo "data and logs kept in $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

key="shoal-test-key"
secret="shoal-test-secret-$RANDOM$RANDOM"
region="us-east-1"
bucket="shoal-s3-test"
s3_port="$(free_port)"; console_port="$(free_port)"
endpoint="http://127.0.0.1:$s3_port"
mkdir -p "$tmp/minio-data" "$tmp/minio-certs"
t0=$EPOCHREALTIME
MINIO_ROOT_USER="$key" MINIO_ROOT_PASSWORD="$secret" MINIO_UPDATE=off \
  timeout "$max_seconds" "$minio" server "$tmp/minio-data" --quiet \
  --address "127.0.0.1:$s3_port" --console-address "127.0.0.1:$console_port" \
  --certs-dir "$tmp/minio-certs" >"$tmp/minio.log" 2>&1 &
minio_pid=$!
up=""
for _ in $(seq 300); do
  if curl -fsS -o /dev/null "$endpoint/minio/health/live" 2>/dev/null; then up=1; break; fi
  kill -0 "$minio_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$up" ]]; then
  cat "$tmp/minio.log" >&2
  abort "MinIO did not become live on $endpoint within 30s"
fi
ok "MinIO live on $endpoint after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')s"

# SigV4-signed S3 requests, as root user.
s3() { curl -fsS --user "$key:$secret" --aws-sigv4 "aws:amz:$region:s3" "$@"; }

step "bucket"
# A live MinIO may still answer 503 while it initialises (seconds on a loaded machine):
# retried for up to 60 s; any other failure is not.
made=""
for _ in $(seq 120); do
  if s3 -X PUT "$endpoint/$bucket" -o "$tmp/mb.out" 2>"$tmp/mb.err"; then made=1; break; fi
  grep -q "returned error: 503" "$tmp/mb.err" || break
  sleep 0.5
done
if [[ -n "$made" ]]; then
  ok "created bucket $bucket with a SigV4-signed PUT"
else
  cat "$tmp/mb.err" "$tmp/mb.out" >&2 2>/dev/null || true
  abort "create bucket $bucket"
fi

# ------------------------------------------------------------------ Shoal agent
kafka_port="$(free_port)"; metrics_port="$(free_port)"
bootstrap="127.0.0.1:$kafka_port"
starts=0
start_agent() {
  starts=$((starts + 1))
  local log="$tmp/agent$starts.log"
  env -u AWS_SESSION_TOKEN -u AWS_PROFILE \
    AWS_ACCESS_KEY_ID="$key" AWS_SECRET_ACCESS_KEY="$secret" AWS_REGION="$region" \
    AWS_ENDPOINT_URL="$endpoint" \
    timeout "$max_seconds" "$shoal" agent \
    --metadata "sqlite://$tmp/meta.db" \
    --object-store "s3://$bucket/shoal-test" \
    --listen "$bootstrap" --metrics-listen "127.0.0.1:$metrics_port" \
    --batch-timeout 50ms >"$log" 2>&1 &
  agent_tpid=$!
  for _ in $(seq 200); do
    grep -q "Shoal is listening" "$log" 2>/dev/null && break
    kill -0 "$agent_tpid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q "Shoal is listening" "$log"; then
    echo "--- $log" >&2; cat "$log" >&2
    return 1
  fi
  agent_pid="$(pgrep -P "$agent_tpid" | head -1)"
  [[ -n "$agent_pid" ]] || { echo "could not find the agent under timeout ($agent_tpid)" >&2; return 1; }
  echo "  $(grep -m1 "Shoal is listening" "$log" | sed 's/\x1b\[[0-9;]*m//g')"
}
# The value of shoal_object_store_requests_total{op="OP"} (empty if unreadable).
requests() {
  curl -fsS --max-time 5 "http://127.0.0.1:$metrics_port/metrics" 2>/dev/null \
    | awk -v want="shoal_object_store_requests_total{op=\"$1\"}" '$1 == want { print $2 }' || true
}
check_py() { timeout 300 "$python" "$here/check.py" "$@"; }
topic="s3-test-$RANDOM"
state="$tmp/acked.json"

step "shoal agent on s3://$bucket/shoal-test"
start_agent || abort "shoal agent started against MinIO"
ok "shoal agent started against MinIO"

step "produce $records keyed records (acks=all) to $topic, 3 partitions"
if check_py produce "$bootstrap" "$topic" "$state" "$records" --create 3; then
  ok "produce $records records, all acknowledged"
else
  bad "produce $records records, all acknowledged"
fi

step "read back before restart"
if check_py verify "$bootstrap" "$topic" "$state"; then ok "read back before restart"; else bad "read back before restart"; fi

puts="$(requests put)"
echo "  object store PUTs so far: ${puts:-unreadable}, GETs: $(requests get)"
if [[ "${puts:-0}" -gt 0 ]]; then ok "PUT count > 0 before restart ($puts)"; else bad "PUT count > 0 before restart (${puts:-unreadable})"; fi

step "list s3://$bucket/shoal-test/"
# curl 7.88's SigV4 signs the query string as written, where S3 servers sign it sorted and
# URI-encoded: so the parameters go in sorted order and the prefix's '/' as %2F, or the
# answer is 403 SignatureDoesNotMatch.
if s3 "$endpoint/$bucket?list-type=2&prefix=shoal-test%2F" -o "$tmp/list.xml" 2>"$tmp/list.err"; then
  objects="$(grep -o '<Key>[^<]*</Key>' "$tmp/list.xml" | sed 's/<[^>]*>//g' || true)"
  n_shoal="$(grep -c '^shoal-test/data/.*\.shoal$' <<<"$objects" || true)"
  echo "  $(wc -l <<<"$objects") keys listed, $n_shoal under shoal-test/data/*.shoal; e.g. $(head -1 <<<"$objects")"
  if [[ "$n_shoal" -gt 0 ]]; then ok "bucket holds .shoal objects ($n_shoal)"; else bad "bucket holds .shoal objects"; cat "$tmp/list.xml"; fi
else
  cat "$tmp/list.err" >&2
  bad "signed ListObjectsV2"
fi

step "kill -9 the agent and restart it on the same bucket and database"
kill -KILL "$agent_pid"
wait "$agent_tpid" 2>/dev/null || true
agent_tpid=""; agent_pid=""
if start_agent; then ok "agent restarted after SIGKILL"; else abort "agent restarted after SIGKILL"; fi
gets_before="$(requests get)"

step "read back after restart (from S3)"
if check_py verify "$bootstrap" "$topic" "$state"; then ok "read back after restart"; else bad "read back after restart"; fi
gets="$(requests get)"
echo "  object store GETs: ${gets_before:-unreadable} before the read-back, ${gets:-unreadable} after"
if [[ "${gets:-0}" -gt "${gets_before:-0}" ]]; then ok "GET count > 0 after restart read ($gets)"; else bad "GET count > 0 after restart read (${gets:-unreadable})"; fi

step "produce more after restart; offsets must continue, nothing overwritten"
more=$((records / 5))
if check_py produce "$bootstrap" "$topic" "$state" "$more" && check_py verify "$bootstrap" "$topic" "$state"; then
  ok "produce and read back after restart"
else
  bad "produce and read back after restart"
fi

step "SIGTERM the agent"
kill -TERM "$agent_pid"
rc=0
for _ in $(seq 150); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$agent_pid" 2>/dev/null; then
  bad "agent exits within 15s of SIGTERM"
else
  wait "$agent_tpid" 2>/dev/null || rc=$?
  agent_tpid=""; agent_pid=""
  if [[ $rc -eq 0 ]]; then ok "agent exits cleanly on SIGTERM"; else bad "agent exits cleanly on SIGTERM (exit $rc)"; fi
fi

# Object store trouble shows in the agent's log even when the clients' checks pass.
errs="$(grep -hiE 'error|warn|panic' "$tmp"/agent*.log | sed 's/\x1b\[[0-9;]*m//g' || true)"
if [[ -n "$errs" ]]; then
  echo; echo "agent log lines with error/warn/panic:"; head -40 <<<"$errs"
  if grep -qi panic <<<"$errs"; then bad "no panic in the agent logs"; fi
fi
if [[ $failed -gt 0 ]]; then
  echo "--- last lines of minio.log"; tail -20 "$tmp/minio.log"
  for f in "$tmp"/agent*.log; do echo "--- last lines of $(basename "$f")"; tail -20 "$f" | sed 's/\x1b\[[0-9;]*m//g'; done
fi
summary
[[ $failed -eq 0 ]]
