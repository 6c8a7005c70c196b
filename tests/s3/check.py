"""Produce keyed records to Shoal and check that every acknowledged one reads back.

    check.py produce BOOTSTRAP TOPIC STATE COUNT [--create PARTITIONS] [--waves N]
    check.py verify  BOOTSTRAP TOPIC STATE

`produce` sends COUNT keyed records with acks=all in N waves (default 10; each wave's
acknowledgements are awaited, so the agent writes several objects), keeps every
acknowledged (partition, offset, key, value) from the delivery reports and appends them
to the JSON file STATE; any failed delivery is an error. `verify` reads each partition
from the beginning with assign() (no consumer group) up to its high watermark and checks
that every acknowledged record is there, at its offset, with its key and value. Records
that were never acknowledged (a retry's duplicate, say) are reported, not failed.
Exit code 0 on success, 1 on a failed check.
"""

import argparse
import hashlib
import json
import os
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 30  # seconds, for one client call
DEADLINE = 180  # seconds, for a whole produce or read-back


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def load(state):
    if not os.path.exists(state):
        return []
    with open(state) as f:
        return json.load(f)


def value_for(run, i):
    # Values of varied sizes (tens of bytes to a few KiB) that can't be confused.
    digest = hashlib.sha256(f"{run}/{i}".encode()).hexdigest()
    return f"{run}-{i}-" + digest * (1 + i % 60)


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        request_timeout=TIMEOUT,
        operation_timeout=TIMEOUT,
    )
    fut[topic].result(timeout=TIMEOUT)
    end = time.time() + TIMEOUT
    while time.time() < end:
        t = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        if t and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 for p in t.partitions.values()
        ):
            return
        time.sleep(0.2)
    fail(f"topic {topic} did not show {partitions} led partitions")


def produce(bootstrap, topic, state, count, create, waves):
    wave = max(1, count // max(1, waves))
    if create:
        create_topic(bootstrap, topic, create)
    acked = load(state)
    run = f"run{len(acked)}"
    errors = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            # Idempotent: a retry across the restart is written once.
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
        }
    )

    def report(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")
            return
        acked.append(
            [msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()]
        )

    start = time.time()
    for i in range(count):
        key = f"key-{run}-{i}"
        while True:
            try:
                # Keys spread the records over the partitions (the default partitioner).
                producer.produce(topic, key=key, value=value_for(run, i), on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if (i + 1) % wave == 0 or i + 1 == count:
            # Waiting for the acknowledgements between waves makes the agent flush
            # several objects rather than one.
            left = producer.flush(DEADLINE)
            if left:
                fail(f"{left} records still undelivered after {DEADLINE}s")
    took = time.time() - start
    if errors:
        fail(f"{len(errors)} deliveries failed, e.g. {errors[:3]}")
    with open(state, "w") as f:
        json.dump(acked, f)
    per = {}
    for p, _, _, _ in acked[-count:]:
        per[p] = per.get(p, 0) + 1
    print(
        f"produced {count} records in {took:.1f}s, all acknowledged; per partition {dict(sorted(per.items()))}; "
        f"{len(acked)} acknowledged in total",
        flush=True,
    )


def verify(bootstrap, topic, state):
    acked = load(state)
    if not acked:
        fail("no acknowledged records to check")
    expected = {}  # partition -> {offset: (key, value)}
    for p, off, k, v in acked:
        if off in expected.setdefault(p, {}):
            fail(f"two acknowledgements for partition {p} offset {off}")
        expected[p][off] = (k, v)

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "shoal-s3-check-unused",  # librdkafka wants one; never joined
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
        }
    )
    partitions = sorted(expected)
    highs = {}
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT)
        highs[p] = high
        want_high = max(expected[p]) + 1
        if low != 0 or high < want_high:
            fail(f"partition {p}: watermarks [{low}, {high}), expected [0, >= {want_high})")
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])

    got = {p: {} for p in partitions}
    done = {p for p in partitions if highs[p] == 0}
    start = time.time()
    while len(done) < len(partitions):
        if time.time() - start > DEADLINE:
            fail(f"read-back timed out; offsets reached {[len(got[p]) for p in partitions]} of {[highs[p] for p in partitions]}")
        for msg in consumer.consume(500, timeout=1.0):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                fail(f"consumer error: {msg.error()}")
            p, off = msg.partition(), msg.offset()
            if off in got[p]:
                fail(f"partition {p} offset {off} delivered twice")
            got[p][off] = (msg.key().decode(), msg.value().decode())
            if off + 1 >= highs[p]:
                done.add(p)
    took = time.time() - start
    consumer.close()

    problems, extra = [], []
    for p in partitions:
        for off, kv in expected[p].items():
            if off not in got[p]:
                problems.append(f"p{p}@{off} ({kv[0]}) missing")
            elif got[p][off][0] != kv[0]:
                problems.append(f"p{p}@{off} has key {got[p][off][0]!r}, acknowledged {kv[0]!r}")
            elif got[p][off][1] != kv[1]:
                problems.append(f"p{p}@{off} ({kv[0]}) has a different value than acknowledged")
        for off in got[p]:
            if off not in expected[p]:
                extra.append(f"p{p}@{off} ({got[p][off][0]})")
    if problems:
        fail(f"{len(problems)} mismatches, e.g. {problems[:5]}")
    if extra:
        print(f"note: {len(extra)} records that were never acknowledged, e.g. {extra[:5]}", flush=True)
    print(
        f"read back all {len(acked)} acknowledged records in {took:.1f}s: offsets, keys and values match",
        flush=True,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["produce", "verify"])
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("state")
    ap.add_argument("count", type=int, nargs="?", default=0)
    ap.add_argument("--create", type=int, default=0, metavar="PARTITIONS")
    ap.add_argument("--waves", type=int, default=10, help="produce in this many flushed waves")
    a = ap.parse_args()
    if a.command == "produce":
        produce(a.bootstrap, a.topic, a.state, a.count, a.create, a.waves)
    else:
        verify(a.bootstrap, a.topic, a.state)


if __name__ == "__main__":
    main()
