"""Shared fixtures and helpers for the Python transaction compatibility tests.

The broker under test is named by SHOAL_BOOTSTRAP (host:port). It may be Shoal
or Apache Kafka: every check here must pass against Kafka. The server is
assumed to have topic auto-creation off and to implement the idempotent
producer, transactions and consumer groups.
"""

import os
import secrets
import socket
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 30  # seconds, any single client call
WAIT = 30  # seconds, any wait for records to arrive or state to settle
SETTLE = 1.5  # seconds a reader keeps polling after it has what it expects

RUN_ID = secrets.token_hex(4)
_counter = [0]


def unique_name(prefix):
    _counter[0] += 1
    return f"compat-py-txn-{prefix}-{RUN_ID}-{_counter[0]}"


@pytest.fixture(scope="session")
def bootstrap():
    addr = os.environ.get("SHOAL_BOOTSTRAP")
    if not addr:
        pytest.fail("SHOAL_BOOTSTRAP (host:port of the broker under test) is not set")
    host, _, port = addr.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        pytest.fail(f"cannot connect to SHOAL_BOOTSTRAP={addr}: {exc}")
    return addr


@pytest.fixture(scope="session")
def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "client.id": "compat-txn-confluent-admin"})


def wait_until(pred, timeout, what, interval=0.2):
    """Poll pred() until it returns a truthy value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as exc:  # keep polling; report the last failure
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def create_topic(admin, partitions):
    """Creates a uniquely named topic, waits until every partition has a leader."""
    name = unique_name("t")
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                             request_timeout=TIMEOUT)
    fs[name].result(timeout=TIMEOUT)

    def ready():
        md = admin.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        return t is not None and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 for p in t.partitions.values())

    wait_until(ready, TIMEOUT, f"topic {name} with {partitions} led partitions")
    return name


def make_producer(bootstrap, client_id, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "message.timeout.ms": TIMEOUT * 1000,
        "request.timeout.ms": 15000,
    }
    conf.update(extra)
    return Producer(conf)


def make_txn_producer(bootstrap, client_id, transactional_id, timeout_ms=60000):
    """A transactional producer (librdkafka turns idempotence on for it), initialized."""
    p = make_producer(bootstrap, client_id, **{"transactional.id": transactional_id,
                                              "transaction.timeout.ms": timeout_ms})
    p.init_transactions(TIMEOUT)
    return p


class Delivered:
    """Delivery callback: collects (partition, offset, value) in delivery order, and errors."""

    def __init__(self):
        self.errors = []
        self.records = []

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.records.append((msg.partition(), msg.offset(), msg.value().decode()))

    def offsets(self, partition=0):
        return [o for p, o, _ in self.records if p == partition]


def produce(producer, topic, partition, values):
    """Produces the values to one partition, flushes, and returns their offsets in order."""
    d = Delivered()
    for v in values:
        producer.produce(topic, key=b"k", value=v.encode(), partition=partition, on_delivery=d)
        producer.poll(0)
    remaining = producer.flush(TIMEOUT)
    assert remaining == 0, f"{remaining} records not delivered"
    assert not d.errors, f"delivery errors: {d.errors[:3]}"
    return d.offsets(partition)


class Reader:
    """A consumer without group protocol (assign() from the beginning) with one isolation level,
    collecting (partition, offset, value) in the order it got them."""

    def __init__(self, bootstrap, topic, partitions, isolation):
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            # Required by librdkafka; no group protocol is used (assign() only).
            "group.id": unique_name("unused"),
            "client.id": f"compat-txn-confluent-{isolation}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 200,
        })
        self.topic = topic
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.records = []

    def _poll(self, seconds):
        for m in self.consumer.consume(num_messages=500, timeout=seconds):
            assert m.error() is None, f"consumer error: {m.error()}"
            self.records.append((m.partition(), m.offset(), m.value().decode()))

    def poll_until(self, n, timeout=WAIT):
        """Polls until at least n records in all, or timeout seconds."""
        deadline = time.monotonic() + timeout
        while len(self.records) < n and time.monotonic() < deadline:
            self._poll(0.2)
        return self

    def poll_for(self, seconds=SETTLE):
        """Polls for this long, whatever comes (records that must not come should show up)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._poll(0.2)
        return self

    def values(self, partition=None):
        return [v for p, _, v in self.records if partition is None or p == partition]

    def offsets(self, partition=0):
        return [o for p, o, _ in self.records if p == partition]

    def high_watermark(self, partition=0):
        """ListOffsets(latest) with this consumer's isolation level: the LSO for read_committed."""
        _, high = self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=TIMEOUT,
                                                     cached=False)
        return high

    def close(self):
        self.consumer.close()


@pytest.fixture
def readers():
    """Makes Readers and closes them after the test."""
    made = []

    def make(*args):
        r = Reader(*args)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
