#!/usr/bin/env bash
# Security with real clients: SASL_SSL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN), mutual TLS,
# hostile SASL handshakes and ACLs, against Shoal or (to validate the suite) Apache Kafka 4.3.1.
#
#   tests/compat/security/run.sh SHOAL_BIN     a fresh `shoal playground` with TLS, SASL and ACLs
#   tests/compat/security/run.sh --kafka       Kafka 4.3.1 (bench/kafka/start-kafka-secure.sh)
#
# The two modes differ only in how the server is started and how the users (admin, alice, bob;
# SCRAM-SHA-256 and SCRAM-SHA-512 each) are created; every check below is shared:
#   setup   as the super user admin: topics, 10 records in t1, ACLs with Kafka 4.3.1's
#           kafka-acls (alice and User:CN=alice: All on prefixed topic/group `sec-`; alice:
#           Read on topic t1 and group g1; bob: Deny All on t1, Read on group sec-bob)
#   scram-admin  kafka-configs --alter/--describe/--delete-config SCRAM credentials online;
#           the new user logs in, loses one mechanism, keeps the other
#   java    kafka-clients 4.3.1: produce/consume N records per mechanism and over mTLS, wrong
#           password -> SaslAuthenticationException, the ACL checks (Topic-, Group- and
#           TransactionalIdAuthorizationException, bob's metadata lacks t1)
#   confluent, kafka-python, franz-go: the same produce/consume and wrong-password checks
#   kcat    PLAIN and mTLS produce/consume, wrong password (Debian's kcat is on librdkafka
#           2.0.2, whose SCRAM Kafka >= 4.0 rejects, see docs/compatibility.md)
#   hostile raw sockets: oversized SaslAuthenticate, unsupported mechanism, Metadata first
# Needs java, mvn, go, kcat, openssl, keytool, python3 (scripts/install-test-deps.sh).
# Environment: SHOAL_SECURITY_RECORDS (default 200), KEEP_DATA=1 (keep the temp dir),
# SHOAL_SECURITY_AUTHORIZER=none (Shoal mode: start without --authorizer/--super-users, for a
# build without ACLs; the setup's ACLs and the ACL checks then fail).
# Last line: `security: N passed, M failed` (suites). Exit code 1 when any failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
[[ $# -eq 1 ]] || { echo "usage: $0 SHOAL_BIN | --kafka" >&2; exit 2; }
mode=shoal
if [[ "$1" == --kafka ]]; then
  mode=kafka
else
  shoal="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  [[ -x "$shoal" ]] || { echo "security: no shoal binary at $1" >&2; exit 2; }
fi
records="${SHOAL_SECURITY_RECORDS:-200}"
libs="$("$root/bench/kafka/fetch-kafka.sh")"
py="$(bash "$here/../python/venv.sh")"
users=(admin:admin-secret alice:alice-secret bob:bob-secret)

tmp="$(mktemp -d "${TMPDIR:-/tmp}/shoal-security.XXXXXX")"
certs="$tmp/certs"
data="$tmp/server"
pid=""
cleanup() {
  if [[ "$mode" == kafka ]]; then
    "$root/bench/kafka/stop-kafka.sh" "$data" >/dev/null 2>&1 || true
  elif [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [[ "${KEEP_DATA:-}" == 1 ]]; then echo "security: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

"$root/tests/security/gen-certs.sh" "$certs"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
p_sasl="$(free_port)"; p_ssl="$(free_port)"; p_plain="$(free_port)"
while [[ "$p_ssl" == "$p_sasl" ]]; do p_ssl="$(free_port)"; done
while [[ "$p_plain" == "$p_sasl" || "$p_plain" == "$p_ssl" ]]; do p_plain="$(free_port)"; done
sasl_bootstrap="127.0.0.1:$p_sasl"
ssl_bootstrap="127.0.0.1:$p_ssl"

# ------------------------------------------------------------ the only mode-specific part
if [[ "$mode" == kafka ]]; then
  SHOAL_KAFKA_USERS="${users[*]}" SHOAL_KAFKA_WATCH_PID=$$ \
    SHOAL_KAFKA_MAX_SECONDS="${SHOAL_SECURITY_MAX_SECONDS:-1200}" \
    "$root/bench/kafka/start-kafka-secure.sh" "$certs" "$data" "$p_sasl" "$p_ssl" "$p_plain" >/dev/null
  echo "security: Apache Kafka 4.3.1 on SASL_SSL $sasl_bootstrap, SSL $ssl_bootstrap"
else
  mkdir -p "$data"
  for u in "${users[@]}"; do
    printf '%s' "${u#*:}" >"$tmp/password"
    for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
      "$shoal" users add "${u%%:*}" --data-dir "$data/d" --mechanism "$mech" \
        --password-file "$tmp/password" >>"$data/users.log" 2>&1 \
        || { echo "security: shoal users add ${u%%:*} failed:" >&2; cat "$data/users.log" >&2; exit 1; }
    done
  done
  rm -f "$tmp/password"
  log="$data/shoal.log"
  authz=(--authorizer acl --super-users 'User:admin')
  [[ "${SHOAL_SECURITY_AUTHORIZER:-acl}" == none ]] && authz=()
  timeout "${SHOAL_SECURITY_MAX_SECONDS:-1200}" "$shoal" playground --data-dir "$data/d" \
    --listeners "SASL_SSL://$sasl_bootstrap,SSL://$ssl_bootstrap,PLAINTEXT://127.0.0.1:$p_plain" \
    --tls-cert "$certs/server.pem" --tls-key "$certs/server-key.pem" --tls-ca "$certs/ca.pem" \
    --tls-client-auth requested --sasl-enabled-mechanisms PLAIN,SCRAM-SHA-256,SCRAM-SHA-512 \
    "${authz[@]}" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 150); do
    grep -q "Shoal is listening" "$log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { echo "security: shoal exited early:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "Shoal is listening" "$log" || { echo "security: shoal did not start:" >&2; cat "$log" >&2; exit 1; }
  echo "security: Shoal on SASL_SSL $sasl_bootstrap, SSL $ssl_bootstrap (log: $log)"
fi
server_alive() {
  if [[ "$mode" == kafka ]]; then kill -0 "$(cat "$data/kafka.pid")" 2>/dev/null; else kill -0 "$pid" 2>/dev/null; fi
}

# ------------------------------------------------------------ shared from here on
cat >"$tmp/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-secret";
ssl.truststore.type=PKCS12
ssl.truststore.location=$certs/truststore.p12
ssl.truststore.password=changeit
EOF
quiet_log=(-Dlog4j2.configurationFile="$root/bench/kafka/tools-log4j2.properties")
acls() {
  java "${quiet_log[@]}" -cp "$libs/*" org.apache.kafka.tools.AclCommand \
    --bootstrap-server "$sasl_bootstrap" --command-config "$tmp/admin.properties" "$@"
}

passed=0; failed=0; failures=()
suite() {
  local name="$1"; shift
  echo; echo "==> security suite: $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}

# acl_add ARGS...: kafka-acls --add; its output is shown only when it fails.
acl_add() {
  local out
  out="$(acls --add "$@" 2>&1)" && return 0
  echo "setup: kafka-acls --add $* failed:"; sed 's/^/     /' <<<"$out" | tail -5
  return 1
}

setup() {
  "$py" - "$sasl_bootstrap" "$certs" <<'PY' || return 1
import sys
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
conf = {"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin",
        "sasl.password": "admin-secret", "ssl.ca.location": sys.argv[2] + "/ca.pem"}
names = ["t1"] + [f"sec-{c}-{m}" for c in ("java", "confluent", "kafkapython", "franz", "kcat")
                  for m in ("scram256", "scram512", "plain", "mtls")]
admin = AdminClient(conf)
for name, f in admin.create_topics([NewTopic(n, 1, 1) for n in names]).items():
    f.result(30)
p = Producer({**conf, "acks": "all"})
for i in range(10):
    p.produce("t1", value=f"t1-{i}")
assert p.flush(30) == 0, "records for t1 not delivered"
print(f"setup: created {len(names)} topics, 10 records in t1")
PY
  acl_add --allow-principal User:alice --allow-principal User:CN=alice --operation All \
    --topic sec- --group sec- --resource-pattern-type prefixed || return 1
  acl_add --allow-principal User:alice --operation Read --topic t1 --group g1 || return 1
  acl_add --deny-principal User:bob --operation All --topic t1 || return 1
  acl_add --allow-principal User:bob --operation Read --group sec-bob || return 1
  local listed
  listed="$(acls --list --topic t1)" || return 1
  grep -q "principal=User:bob, host=\*, operation=ALL, permissionType=DENY" <<<"$listed" \
    || { echo "setup: kafka-acls --list lacks bob's deny:"; echo "$listed"; return 1; }
  echo "setup: ACLs in place"
}

# SCRAM credentials managed online with Kafka 4.3.1's kafka-configs as admin: carol is
# created, can log in, loses SCRAM-SHA-256 and can then only log in with SCRAM-SHA-512.
scram_admin_checks() {
  local ok=0 bad=0 out
  configs() {
    java "${quiet_log[@]}" -cp "$libs/*" kafka.admin.ConfigCommand --bootstrap-server "$sasl_bootstrap" \
      --command-config "$tmp/admin.properties" --entity-type users --entity-name carol "$@" 2>&1
  }
  # login MECH PASSWORD: exit 0 when carol's metadata request succeeds (retried for 10 s,
  # credentials may take a moment to reach the listener), 1 when authentication fails.
  login() {
    "$py" - "$sasl_bootstrap" "$certs" "$1" "$2" <<'PY'
import sys, time
from confluent_kafka import KafkaError, Producer
errors = []
p = Producer({"bootstrap.servers": sys.argv[1], "security.protocol": "SASL_SSL",
              "sasl.mechanism": sys.argv[3], "sasl.username": "carol", "sasl.password": sys.argv[4],
              "ssl.ca.location": sys.argv[2] + "/ca.pem", "log_level": 0,
              "error_cb": lambda e: errors.append(e)})
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        p.list_topics(timeout=2)
        sys.exit(0)
    except Exception:
        p.poll(0.2)  # serves error_cb
    if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        sys.exit(1)
sys.exit(2)
PY
  }
  step() {
    local name="$1"; shift
    if "$@"; then ok=$((ok + 1)); echo "ok   $name"; else bad=$((bad + 1)); echo "FAIL $name"; fi
  }
  # One mechanism per request: Kafka refuses two alterations of one user in one request.
  out="$(configs --alter --add-config 'SCRAM-SHA-256=[iterations=8192,password=carol-secret]')"
  step "kafka-configs adds carol's SCRAM-SHA-256" grep -q "Completed updating config for user carol" <<<"$out"
  out="$(configs --alter --add-config 'SCRAM-SHA-512=[password=carol-secret]')"
  step "kafka-configs adds carol's SCRAM-SHA-512" grep -q "Completed updating config for user carol" <<<"$out"
  out="$(configs --describe)"
  # (the mechanisms are listed in no fixed order)
  step "kafka-configs describes SCRAM-SHA-256 with 8192 iterations" grep -q "SCRAM-SHA-256=iterations=8192" <<<"$out"
  step "kafka-configs describes SCRAM-SHA-512 with the default 4096" grep -q "SCRAM-SHA-512=iterations=4096" <<<"$out"
  [[ $bad -eq 0 ]] || echo "$out" | sed 's/^/     /'
  step "carol logs in with SCRAM-SHA-256" login SCRAM-SHA-256 carol-secret
  step "carol logs in with SCRAM-SHA-512" login SCRAM-SHA-512 carol-secret
  local rc=0; login SCRAM-SHA-512 wrong-secret || rc=$?
  step "carol with a wrong password: authentication failed" test "$rc" -eq 1
  out="$(configs --alter --delete-config SCRAM-SHA-256)"
  step "kafka-configs deletes SCRAM-SHA-256" grep -q "Completed updating config for user carol" <<<"$out"
  # Deletion may take a moment to reach the listener: retry the failing login for 10 s.
  local gone=1
  for _ in 1 2 3 4 5; do
    rc=0; login SCRAM-SHA-256 carol-secret >/dev/null 2>&1 || rc=$?
    if [[ $rc -eq 1 ]]; then gone=0; break; fi
    sleep 2
  done
  step "carol can no longer log in with SCRAM-SHA-256" test "$gone" -eq 0
  step "carol still logs in with SCRAM-SHA-512" login SCRAM-SHA-512 carol-secret
  echo "scram-admin: $ok passed, $bad failed"
  [[ $bad -eq 0 ]]
}

java_checks() {
  source "$here/../jvm/lib.sh"
  jvm_build java-security security || return 1
  jvm_opts=(-Xmx512m "-Dorg.slf4j.simpleLogger.defaultLogLevel=${SHOAL_COMPAT_LOG_LEVEL:-off}")
  [[ "${SHOAL_COMPAT_VERBOSE:-0}" == 1 ]] && jvm_opts+=(-Dcompat.verbose=true)
  jvm_run java-security 600 dev.shoal.compat.security.SecurityCompat \
    "$sasl_bootstrap" "$ssl_bootstrap" "$certs" "$records"
}

franz_checks() {
  (cd "$here/go" && timeout 300 go run . "$sasl_bootstrap" "$ssl_bootstrap" "$certs" "$records")
}

kcat_checks() {
  command -v kcat >/dev/null || { echo "kcat is not installed"; return 1; }
  local ok=0 bad=0 got want
  want="$(seq 1 "$records" | sed 's/^/v/')"
  kc_sasl=(-X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN -X sasl.username=alice
           -X "ssl.ca.location=$certs/ca.pem")
  kc_mtls=(-X security.protocol=SSL -X "ssl.ca.location=$certs/ca.pem"
           -X "ssl.certificate.location=$certs/alice.pem" -X "ssl.key.location=$certs/alice-key.pem")
  kc_round_trip() {
    local name="$1" bootstrap="$2" topic="$3"; shift 3
    if seq 1 "$records" | sed 's/^/v/' | timeout 60 kcat -b "$bootstrap" "$@" -P -t "$topic" 2>"$tmp/kcat.err" \
       && got="$(timeout 60 kcat -b "$bootstrap" "$@" -C -t "$topic" -o beginning -e -q 2>>"$tmp/kcat.err")" \
       && [[ "$got" == "$want" ]]; then
      ok=$((ok + 1)); echo "ok   $name"
    else
      bad=$((bad + 1)); echo "FAIL $name: read $(grep -c . <<<"${got:-}") of $records; stderr:"
      sed 's/^/     /' "$tmp/kcat.err" | tail -5
    fi
  }
  kc_round_trip "SASL_SSL PLAIN produce and consume $records" "$sasl_bootstrap" sec-kcat-plain \
    "${kc_sasl[@]}" -X sasl.password=alice-secret
  kc_round_trip "mutual TLS produce and consume $records" "$ssl_bootstrap" sec-kcat-mtls "${kc_mtls[@]}"
  if timeout 30 kcat -b "$sasl_bootstrap" "${kc_sasl[@]}" -X sasl.password=not-alices-password \
       -L -m 10 >"$tmp/kcat.out" 2>&1; then
    bad=$((bad + 1)); echo "FAIL SASL_SSL PLAIN wrong password: metadata succeeded"
  elif grep -q "Authentication failed" "$tmp/kcat.out"; then
    ok=$((ok + 1)); echo "ok   SASL_SSL PLAIN wrong password: Authentication failed"
  else
    bad=$((bad + 1)); echo "FAIL SASL_SSL PLAIN wrong password: no 'Authentication failed' in:"
    sed 's/^/     /' "$tmp/kcat.out" | tail -5
  fi
  echo "kcat-security: $ok passed, $bad failed"
  [[ $bad -eq 0 ]]
}

suite setup setup
suite scram-admin scram_admin_checks
suite java java_checks
suite confluent-kafka "$py" "$here/py_clients.py" confluent "$sasl_bootstrap" "$ssl_bootstrap" "$certs" "$records"
suite kafka-python "$py" "$here/py_clients.py" kafka-python "$sasl_bootstrap" "$ssl_bootstrap" "$certs" "$records"
suite franz-go franz_checks
suite kcat kcat_checks
suite hostile "$py" "$here/hostile.py" "$sasl_bootstrap" "$certs"

if ! server_alive; then
  echo "security: the server died during the run" >&2
  failed=$((failed + 1)); failures+=("server-alive")
fi
echo
[[ ${#failures[@]} -eq 0 ]] || echo "failed suites: ${failures[*]}"
echo "security: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
