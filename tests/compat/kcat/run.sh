#!/usr/bin/env bash
# kcat (Debian's, on librdkafka 2.0) against a Kafka-protocol server: produce keyed
# records to an existing 3-partition topic, read them back from every partition, and
# check the metadata listing. The topic is created with the Python admin client since
# kcat cannot create topics.
#
#   tests/compat/kcat/run.sh HOST:PORT
set -euo pipefail
bootstrap="$1"
command -v kcat >/dev/null || { echo "kcat is not installed (apt-get install kcat)" >&2; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$(bash "$here/../python/venv.sh")"
topic="kcat-$RANDOM$RANDOM"
"$py" - "$bootstrap" "$topic" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in a.create_topics([NewTopic(sys.argv[2], 3, 1)]).values():
    f.result(15)
PY
pass=0; fail=0
check() { if "$@"; then pass=$((pass+1)); else echo "kcat check failed: $*" >&2; fail=$((fail+1)); fi; }

seq 1 300 | awk '{print "k" $1 ":value-" $1}' | timeout 30 kcat -b "$bootstrap" -P -t "$topic" -K : -z lz4
got="$(timeout 30 kcat -b "$bootstrap" -C -t "$topic" -o beginning -e -q -f '%k=%s\n' | sort)"
want="$(seq 1 300 | awk '{print "k" $1 "=value-" $1}' | sort)"
check test "$got" = "$want"
# Per-partition order: offsets within each partition are 0..n-1 in order.
order="$(timeout 30 kcat -b "$bootstrap" -C -t "$topic" -o beginning -e -q -f '%p %o\n')"
check python3 -c '
import sys
seen = {}
for line in sys.stdin.read().split("\n"):
    if not line: continue
    p, o = map(int, line.split())
    assert o == seen.get(p, 0), (p, o, seen.get(p))
    seen[p] = o + 1
assert sum(seen.values()) == 300, seen
' <<<"$order"
check bash -c "timeout 30 kcat -b '$bootstrap' -L -t '$topic' | grep -q '3 partitions'"
echo "kcat: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
