#!/usr/bin/env bash
# Log cleaner throughput (cleanup.policy=compact) and its object-store requests per MB
# cleaned, on a fresh Shoal playground. A measurement, never asserted.
#
#   bench/cleaner.sh [release|debug|PATH-TO-SHOAL]     default release (built here)
#   RECORDS=1000000 KEYS=100000 VALUE_BYTES=100 TOMBSTONE_PCT=5 PARTITIONS=4 bench/cleaner.sh
#
# 1. Creates a topic with cleanup.policy=delete (so nothing is cleaned while it is written)
#    and delete.retention.ms=DELETE_RETENTION_MS (default 10000), and writes RECORDS
#    records (confluent-kafka, keys uniform over KEYS, VALUE_BYTES-byte values,
#    TOMBSTONE_PCT % of them tombstones).
# 2. Switches the topic to cleanup.policy=compact (IncrementalAlterConfigs) and follows the
#    agent's counters (shoal_cleaner_total, shoal_cleaner_busy_ms_total) until a pass
#    over every partition has ended (the agent's "cleaned a partition" log lines): the
#    dedupe phase. Then until the next pass over each, which drops the tombstones once
#    their delete horizon has passed: the tombstone phase.
# 3. Prints per phase and for both together: MB of log the cleaner went over
#    (cleaned_bytes), its busy time and MB/s, records removed, bytes read and written,
#    GETs and PUTs per MB cleaned. (A partition's tombstone pass can run before another
#    partition's dedupe pass, e.g. when a pass lost a swap and starts over: then the
#    phases split differently, and the "both" line is the one to compare.)
#
# The playground runs with --cleaner-interval CLEANER_INTERVAL (default 1s); other flags
# via SHOAL_ARGS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work="$(mktemp -d "${TMPDIR:-/tmp}/shoal-cleaner-bench.XXXXXX")"
source bench/lib.sh
trap bench_cleanup EXIT
bench_shoal_bin "${1:-release}"
py="$(bash tests/compat/python/venv.sh)"

port="$(free_port)"; mport="$(free_port)"
# shellcheck disable=SC2086
bench_playground "$work/shoal.log" --data-dir "$work/d" --listen "127.0.0.1:$port" \
  --metrics-listen "127.0.0.1:$mport" --cleaner-interval "${CLEANER_INTERVAL:-1s}" ${SHOAL_ARGS:-}

"$py" - "127.0.0.1:$port" "http://127.0.0.1:$mport/metrics" "$work/shoal.log" <<'PY'
import os, random, sys, time, urllib.request
from confluent_kafka import Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic, ResourceType)

bootstrap, metrics_url, log_path = sys.argv[1], sys.argv[2], sys.argv[3]
env = lambda k, d: int(os.environ.get(k, d))
records, keys, value_bytes = env("RECORDS", 1_000_000), env("KEYS", 100_000), env("VALUE_BYTES", 100)
tomb_pct, partitions = env("TOMBSTONE_PCT", 5), env("PARTITIONS", 4)
delete_retention_ms = env("DELETE_RETENTION_MS", 10_000)
topic = "cleaner-bench"

def counters():
    out = {}
    for line in urllib.request.urlopen(metrics_url, timeout=10).read().decode().splitlines():
        if line.startswith("shoal_cleaner_total{what="):
            what = line.split('"')[1]
            out[what] = float(line.split()[-1])
        elif line.startswith("shoal_cleaner_busy_ms_total"):
            out["busy_ms"] = float(line.split()[-1])
    return out

admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic(topic, partitions, 1, config={
    "cleanup.policy": "delete", "retention.ms": "-1",
    "delete.retention.ms": str(delete_retention_ms)})])[topic].result(60)

print(f"==> writing {records} records over {keys} keys ({value_bytes}-byte values, "
      f"{tomb_pct}% tombstones) to {partitions} partitions", file=sys.stderr)
rng = random.Random(15)
value = b"v" * value_bytes
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1 << 20,
              "compression.type": "none", "queue.buffering.max.messages": 1_000_000})
live = {}
t0 = time.monotonic()
for i in range(records):
    k = rng.randrange(keys)
    tomb = rng.randrange(100) < tomb_pct
    key = b"key-%08d" % k
    while True:
        try:
            p.produce(topic, key=key, value=None if tomb else value)
            break
        except BufferError:
            p.poll(0.05)
    live[k] = not tomb
    if i % 10000 == 0:
        p.poll(0)
assert p.flush(300) == 0, "records left unsent"
write_s = time.monotonic() - t0
print(f"     written in {write_s:.1f} s; {sum(live.values())} live keys, "
      f"{len(live) - sum(live.values())} deleted", file=sys.stderr)

def passes():
    """Partition passes that wrote something, from the agent's log ("cleaned a partition")."""
    with open(log_path, errors="replace") as f:
        return sum("cleaned a partition" in line for line in f)

def wait_phase(name, since, start_timeout_s):
    """Waits until one more pass per partition has ended (a pass's rewrite can run for
    seconds without moving a counter, so the log says when it ends; the counters are
    added just before its line), then returns the counters' deltas and the wall time."""
    t_start, done_at = time.monotonic(), passes() + partitions
    while passes() < done_at:
        if time.monotonic() - t_start > start_timeout_s:
            print(f"     {name}: no pass over every partition within {start_timeout_s} s", file=sys.stderr)
            break
        time.sleep(0.1)
    now = counters()
    return {k: now.get(k, 0) - since.get(k, 0) for k in now}, time.monotonic() - t_start

def report(name, d, wall):
    mb = d.get("cleaned_bytes", 0) / 1e6
    busy = d.get("busy_ms", 0) / 1000
    per = lambda x: f"{x / mb:.2f}" if mb else "n/a"
    rate = f"{mb / busy:.1f}" if busy else "n/a"
    print(f"RESULT cleaner phase={name} records={records} keys={keys} partitions={partitions} "
          f"cleaned_mb={mb:.1f} busy_s={busy:.2f} mb_per_s={rate} wall_s={wall:.1f} "
          f"removed_records={d.get('removed_records', 0):.0f} read_mb={d.get('read_bytes', 0) / 1e6:.1f} "
          f"written_mb={d.get('written_bytes', 0) / 1e6:.1f} gets={d.get('gets', 0):.0f} "
          f"puts={d.get('puts', 0):.0f} gets_per_mb={per(d.get('gets', 0))} puts_per_mb={per(d.get('puts', 0))}")
    sys.stdout.flush()

before = counters()
res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
    ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
admin.incremental_alter_configs([res])[res].result(30)
t_flip = time.monotonic()
print("==> cleanup.policy=compact: waiting for the dedupe pass", file=sys.stderr)
d, wall = wait_phase("dedupe", before, 600)
report("dedupe", d, wall)
mid = counters()
print(f"==> waiting for the delete horizon ({delete_retention_ms} ms) and the tombstone pass", file=sys.stderr)
d, wall = wait_phase("tombstones", mid, delete_retention_ms / 1000 + 600)
report("tombstones", d, wall)
end = counters()
report("both", {k: end.get(k, 0) - before.get(k, 0) for k in end}, time.monotonic() - t_flip)
PY

bench_stop_playground
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr); load average $(cut -d' ' -f1-3 /proc/loadavg)"
