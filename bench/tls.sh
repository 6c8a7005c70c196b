#!/usr/bin/env bash
# What TLS and SASL cost: produce and catch-up consume over PLAINTEXT and over SASL_SSL
# (SCRAM-SHA-512), against the Shoal playground and Apache Kafka 4.3.1, in one run, with one
# client: Kafka 4.3.1's own kafka-producer-perf-test and kafka-consumer-perf-test (jars from
# bench/kafka/fetch-kafka.sh), configured with --producer.config / --consumer.config.
#
#   bench/tls.sh                       release build of Shoal, then both servers
#   SHOAL_BIN=path/to/shoal bench/tls.sh
#   SKIP_SHOAL=1 bench/tls.sh          Kafka only;  SKIP_KAFKA=1: Shoal only
#   RECORDS=200000 RECORD_SIZE=1024 PARTITIONS=4 bench/tls.sh   (the defaults)
#
# Each server gets the same three listeners (SASL_SSL, SSL with client certificates, PLAINTEXT),
# certificates from tests/security/gen-certs.sh and no authorizer; the user `admin` has
# SCRAM credentials. For each server and protocol: a fresh topic, RECORDS records produced
# at full speed (acks=all), then read back from the start by a new consumer. Prints one
# table at the end: produce MB/s and records/s with p99 latency, consume MB/s (fetch time
# only, without the consumer group join).
# Record the output in docs/benchmarks.md ("TLS and SASL cost").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

records="${RECORDS:-200000}"
size="${RECORD_SIZE:-1024}"
partitions="${PARTITIONS:-4}"
libs="$(bench/kafka/fetch-kafka.sh)"
work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-tls-bench.XXXXXX")"
certs="$work/certs"
shoal_pid=""
cleanup() {
  if [[ -n "$shoal_pid" ]]; then kill -TERM "$shoal_pid" 2>/dev/null || true; wait "$shoal_pid" 2>/dev/null || true; fi
  [[ -f "$work/kafka/kafka.pid" ]] && bench/kafka/stop-kafka.sh "$work/kafka" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
tests/security/gen-certs.sh "$certs"

cat >"$work/plaintext.properties" <<EOF
security.protocol=PLAINTEXT
EOF
cat >"$work/sasl_ssl.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-secret";
ssl.truststore.type=PKCS12
ssl.truststore.location=$certs/truststore.p12
ssl.truststore.password=changeit
EOF
tool() {
  java -Xmx512m "-Dlog4j2.configurationFile=$root/bench/kafka/tools-log4j2.properties" \
    -cp "$libs/*" "$@"
}

rows=()
# measure SERVER PROTOCOL BOOTSTRAP
measure() {
  local server="$1" proto="$2" bootstrap="$3" topic="tls-bench-$2-$RANDOM"
  local props="$work/$(tr 'A-Z' 'a-z' <<<"$proto").properties"
  echo "==> $server $proto ($bootstrap)" >&2
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --command-config "$props" \
    --create --topic "$topic" --partitions "$partitions" --replication-factor 1 >/dev/null
  local pout cout
  pout="$(tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$records" \
    --record-size "$size" --throughput -1 --producer.config "$props" \
    --producer-props "bootstrap.servers=$bootstrap" acks=all linger.ms=5 batch.size=131072 | tail -n1)"
  echo "$pout" >&2
  cout="$(tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$bootstrap" \
    --topic "$topic" --messages "$records" --consumer.config "$props" --timeout 60000 | tail -n1)"
  echo "$cout" >&2
  # "200000 records sent, 41000.2 records/sec (40.04 MB/sec), 300.1 ms avg latency, ..., 812 ms 99th, ..."
  local rps mbs p99 cmbs
  rps="$(sed -E 's/.* records sent, ([0-9.]+) records\/sec.*/\1/' <<<"$pout")"
  mbs="$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<<"$pout")"
  p99="$(sed -E 's/.* ([0-9]+) ms 99th.*/\1/' <<<"$pout")"
  # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
  # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec: fetch.* leave out the join
  cmbs="$(awk -F', *' '{printf "%.1f", $9}' <<<"$cout")"
  rows+=("| $server | $proto | $mbs MB/s | ${rps%.*} rec/s | $p99 ms | $cmbs MB/s |")
}

if [[ "${SKIP_SHOAL:-}" != 1 ]]; then
  if [[ -z "${SHOAL_BIN:-}" ]]; then
    echo "==> building the release binary" >&2
    cargo build --release -q -p shoal
  fi
  shoal="${SHOAL_BIN:-target/release/shoal}"
  printf '%s' admin-secret >"$work/password"
  for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
    "$shoal" users add admin --data-dir "$work/shoal" --mechanism "$mech" --password-file "$work/password" >/dev/null
  done
  ps="$(free_port)"; pt="$(free_port)"; pp="$(free_port)"
  "$shoal" playground --data-dir "$work/shoal" \
    --listeners "SASL_SSL://127.0.0.1:$ps,SSL://127.0.0.1:$pt,PLAINTEXT://127.0.0.1:$pp" \
    --tls-cert "$certs/server.pem" --tls-key "$certs/server-key.pem" --tls-ca "$certs/ca.pem" \
    --tls-client-auth requested --sasl-enabled-mechanisms PLAIN,SCRAM-SHA-256,SCRAM-SHA-512 \
    >"$work/shoal.log" 2>&1 &
  shoal_pid=$!
  for _ in $(seq 150); do grep -q "Shoal is listening" "$work/shoal.log" && break; sleep 0.1; done
  grep -q "Shoal is listening" "$work/shoal.log" || { echo "shoal did not start:" >&2; cat "$work/shoal.log" >&2; exit 1; }
  measure shoal PLAINTEXT "127.0.0.1:$pp"
  measure shoal SASL_SSL "127.0.0.1:$ps"
  kill -TERM "$shoal_pid"; wait "$shoal_pid" 2>/dev/null || true; shoal_pid=""
fi

if [[ "${SKIP_KAFKA:-}" != 1 ]]; then
  ps="$(free_port)"; pt="$(free_port)"; pp="$(free_port)"
  SHOAL_KAFKA_AUTHORIZER=none SHOAL_KAFKA_WATCH_PID=$$ \
    bench/kafka/start-kafka-secure.sh "$certs" "$work/kafka" "$ps" "$pt" "$pp" >/dev/null
  measure kafka-4.3.1 PLAINTEXT "127.0.0.1:$pp"
  measure kafka-4.3.1 SASL_SSL "127.0.0.1:$ps"
  bench/kafka/stop-kafka.sh "$work/kafka" >/dev/null
fi

echo
echo "$records records of $size B, $partitions partitions, acks=all, one producer then one consumer"
echo "| server | listener | produce | produce | produce p99 | catch-up consume |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
