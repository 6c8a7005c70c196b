"""A confluent-kafka (librdkafka) producer over its producer_byte_rate quota.

    throttled_producer.py BOOTSTRAP CLIENT_ID QUOTA_BYTES_PER_S SECONDS

Creates the topic `quota-compat` (one partition) if needed, then produces 10 kB records
as fast as the client lets it for SECONDS. Passes (exit 0) when librdkafka's throttle
callback fired with a positive throttle time, every record is acknowledged, and the
acknowledged throughput stayed within what the quota allows over Kafka's 11 s window
(at most QUOTA × max(SECONDS, 10 s) plus one in-flight window). Prints the figures.
"""

import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, client_id, quota, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
topic = "quota-compat"

admin = AdminClient({"bootstrap.servers": bootstrap})
fut = admin.create_topics([NewTopic(topic, 1, 1)])[topic]
try:
    fut.result(timeout=15)
except Exception as e:  # an existing topic from an earlier run is fine
    if "TOPIC_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
        raise

throttles = []
acked = {"n": 0, "bytes": 0, "errors": 0}


def on_throttle(event):
    throttles.append(event.throttle_time)


def on_delivery(err, msg):
    if err is not None:
        acked["errors"] += 1
    else:
        acked["n"] += 1
        acked["bytes"] += len(msg.value())


p = Producer(
    {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "throttle_cb": on_throttle,
        "linger.ms": 5,
        "batch.size": 65536,
        "queue.buffering.max.kbytes": 1024,
        "message.timeout.ms": 60000,
    }
)
value = b"q" * 10_000
sent = 0
start = time.monotonic()
while time.monotonic() - start < seconds:
    try:
        p.produce(topic, value, on_delivery=on_delivery)
        sent += 1
    except BufferError:
        pass  # the local queue is full: the client is being held back
    p.poll(0.01)
elapsed_send = time.monotonic() - start
left = p.flush(60)
elapsed = time.monotonic() - start
rate = acked["bytes"] / elapsed
allowed = quota * (max(elapsed, 10.0) + 1.0) + 1024 * 1024 + 65536 * 5
print(
    f"throttled producer: {acked['n']} of {sent} records acknowledged ({acked['bytes']} bytes) "
    f"in {elapsed:.1f} s = {rate / 1000:.1f} kB/s against a quota of {quota / 1000:.1f} kB/s; "
    f"{len(throttles)} throttle callbacks, max {max(throttles, default=0):.3f} s"
)
ok = True
if not any(t > 0 for t in throttles):
    print("FAIL: librdkafka's throttle callback never reported a throttle time")
    ok = False
if left or acked["errors"] or acked["n"] != sent:
    print(f"FAIL: {left} records unflushed, {acked['errors']} delivery errors")
    ok = False
if acked["bytes"] > allowed:
    print(f"FAIL: {acked['bytes']} bytes got through, more than the quota allows ({allowed:.0f})")
    ok = False
sys.exit(0 if ok else 1)
