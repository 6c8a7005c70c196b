"""Compatibility tests with confluent-kafka (librdkafka).

No consumer groups: librdkafka insists on a group.id string for a Consumer,
but the tests only ever assign() explicit partitions and offsets, with
auto-commit and offset storing off, and never subscribe().
"""

import os
import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from conftest import (
    CODECS,
    PARTITIONS,
    RECORDS_PER_PARTITION,
    RUN_ID,
    expected_records,
    unique_topic,
    wait_until,
)

TIMEOUT = 30  # seconds, for any single client call
BIG = 1024 * 1024  # the "1 MB" record: exactly 1 MiB of value


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 15000})


def create_topic(admin, name, partitions, config=None):
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=TIMEOUT,
        operation_timeout=TIMEOUT,
    )
    futures[name].result(timeout=TIMEOUT)
    wait_for_partitions(admin, name, partitions)


def wait_for_partitions(admin, name, partitions):
    """Wait until metadata shows the topic with that many partitions, all led."""

    def ready():
        md = admin.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            return False
        return all(p.leader >= 0 and p.error is None for p in t.partitions.values())

    wait_until(ready, TIMEOUT, f"topic {name} with {partitions} led partitions")


def make_producer(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        # librdkafka's default is off; the idempotent producer is what
        # pipelines need, so test it.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        # One request in flight so a retry can never reorder a partition.
        "max.in.flight.requests.per.connection": 1,
        "message.timeout.ms": TIMEOUT * 1000,
        "request.timeout.ms": 15000,
    }
    conf.update(extra)
    return Producer(conf)


def make_consumer(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        # Required by librdkafka; no group protocol is used (assign() only).
        "group.id": f"compat-py-unused-{RUN_ID}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "socket.timeout.ms": 15000,
    }
    conf.update(extra)
    return Consumer(conf)


class DeliveryTracker:
    def __init__(self):
        self.errors = []
        self.delivered = []

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.delivered.append((msg.partition(), msg.offset()))


def produce_all(producer, topic, per_partition, timestamps=None, flush_every=None):
    """Produce {partition: [(key, value, headers)]}; return delivery offsets."""
    tracker = DeliveryTracker()
    for p, recs in per_partition.items():
        for i, (key, value, headers) in enumerate(recs):
            kwargs = {}
            if headers:
                kwargs["headers"] = headers
            if timestamps is not None:
                kwargs["timestamp"] = timestamps[p][i]
            producer.produce(topic, value=value, key=key, partition=p,
                             on_delivery=tracker, **kwargs)
            producer.poll(0)
            if flush_every and (i + 1) % flush_every == 0:
                assert producer.flush(TIMEOUT) == 0
    remaining = producer.flush(TIMEOUT)
    assert remaining == 0, f"{remaining} messages still undelivered after {TIMEOUT}s"
    assert not tracker.errors, f"delivery errors: {tracker.errors}"
    return tracker.delivered


def consume_exact(consumer, topic, counts, timeout=TIMEOUT):
    """Assign the partitions of counts {partition: n} from offset 0, read n each."""
    consumer.assign([TopicPartition(topic, p, 0) for p in counts])
    got = {p: [] for p in counts}
    deadline = time.monotonic() + timeout
    while any(len(got[p]) < n for p, n in counts.items()):
        if time.monotonic() > deadline:
            have = {p: len(v) for p, v in got.items()}
            raise AssertionError(f"timed out reading {topic}: wanted {counts}, have {have}")
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(msg.error())
        got[msg.partition()].append(msg)
    return got


def as_tuple(msg):
    return (msg.key(), msg.value(), list(msg.headers() or []))


# ---------------------------------------------------------------- produce / fetch

@pytest.mark.parametrize("codec", CODECS)
def test_produce_fetch_codec(bootstrap, admin, codec):
    topic = unique_topic(f"ck-{codec}")
    create_topic(admin, topic, PARTITIONS)
    expected = {p: expected_records(codec, p) for p in range(PARTITIONS)}

    producer = make_producer(bootstrap, **{"compression.type": codec})
    delivered = produce_all(producer, topic, expected, flush_every=7)
    for p in range(PARTITIONS):
        offs = sorted(o for (dp, o) in delivered if dp == p)
        assert offs == list(range(RECORDS_PER_PARTITION)), f"partition {p} delivery offsets"

    consumer = make_consumer(bootstrap)
    try:
        got = consume_exact(consumer, topic, {p: RECORDS_PER_PARTITION for p in range(PARTITIONS)})
    finally:
        consumer.close()
    for p in range(PARTITIONS):
        msgs = got[p]
        assert [m.offset() for m in msgs] == list(range(RECORDS_PER_PARTITION)), f"partition {p} offsets"
        assert [as_tuple(m) for m in msgs] == expected[p], f"partition {p} records"
        for m in msgs:
            assert m.topic() == topic
            ts_type, ts = m.timestamp()
            assert ts_type == TIMESTAMP_CREATE_TIME and ts > 0


def test_tombstone_and_null_key(bootstrap, admin):
    topic = unique_topic("ck-null")
    create_topic(admin, topic, 1)
    producer = make_producer(bootstrap)
    recs = [(None, None, []), (b"k", None, []), (None, b"v", []), (b"k2", b"", [("e", b"")])]
    produce_all(producer, topic, {0: recs})
    consumer = make_consumer(bootstrap)
    try:
        got = consume_exact(consumer, topic, {0: len(recs)})[0]
    finally:
        consumer.close()
    assert [m.key() for m in got] == [None, b"k", None, b"k2"]
    assert [m.value() for m in got] == [None, None, b"v", b""]
    assert list(got[3].headers()) == [("e", b"")]


# ---------------------------------------------------------------- large record

@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_large_record(bootstrap, admin, codec):
    topic = unique_topic(f"ck-big-{codec}")
    create_topic(admin, topic, 1, {"max.message.bytes": str(4 * BIG)})
    big = os.urandom(BIG)  # incompressible: the batch stays over 1 MiB
    recs = [(b"before", b"small-1", []), (b"big", big, [("size", str(BIG).encode())]),
            (b"after", b"small-2", [])]
    producer = make_producer(bootstrap, **{
        "compression.type": codec,
        "message.max.bytes": 4 * BIG,  # librdkafka's max request/batch size
    })
    produce_all(producer, topic, {0: recs})
    consumer = make_consumer(bootstrap, **{
        "fetch.max.bytes": 8 * BIG,
        "max.partition.fetch.bytes": 8 * BIG,
        "receive.message.max.bytes": 16 * BIG,
    })
    try:
        got = consume_exact(consumer, topic, {0: 3})[0]
    finally:
        consumer.close()
    assert [m.offset() for m in got] == [0, 1, 2]
    assert got[1].key() == b"big"
    assert len(got[1].value()) == BIG
    assert got[1].value() == big
    assert [as_tuple(m) for m in got] == recs


# ---------------------------------------------------------------- offsets for times

N_TS = 12
BASE_TS = (int(time.time() * 1000) // 1000) * 1000 - 3_600_000  # an hour ago, whole second


def _ts_topic(bootstrap, admin):
    """Partition 0: N_TS records at BASE_TS + i*1000 in several batches; partition 1 empty."""
    topic = unique_topic("ck-ts")
    create_topic(admin, topic, 2)
    recs = [(f"k{i}".encode(), f"v{i}".encode(), []) for i in range(N_TS)]
    stamps = {0: [BASE_TS + i * 1000 for i in range(N_TS)]}
    producer = make_producer(bootstrap)
    produce_all(producer, topic, {0: recs}, timestamps=stamps, flush_every=4)
    return topic


@pytest.fixture(scope="module")
def ts_topic(bootstrap, admin):
    return _ts_topic(bootstrap, admin)


def test_explicit_timestamps_round_trip(bootstrap, ts_topic):
    consumer = make_consumer(bootstrap)
    try:
        got = consume_exact(consumer, ts_topic, {0: N_TS})[0]
    finally:
        consumer.close()
    assert [m.timestamp() for m in got] == [(TIMESTAMP_CREATE_TIME, BASE_TS + i * 1000) for i in range(N_TS)]


@pytest.mark.parametrize("target_delta,expected_offset", [
    (-60_000, 0),   # before everything: first record
    (0, 0),         # exactly the first timestamp
    (1, 1),         # just after the first: the next one
    (5_000, 5),     # exact hit inside a batch
    (5_500, 6),     # between two records
    (8_000, 8),     # first record of a later batch
    (11_000, 11),   # exactly the last
    (11_001, -1),   # after everything: no such offset
])
def test_offsets_for_times(bootstrap, ts_topic, target_delta, expected_offset):
    consumer = make_consumer(bootstrap)
    try:
        res = consumer.offsets_for_times([TopicPartition(ts_topic, 0, BASE_TS + target_delta)], timeout=TIMEOUT)
    finally:
        consumer.close()
    assert len(res) == 1
    assert res[0].error is None, res[0].error
    assert res[0].offset == expected_offset


def test_offsets_for_times_empty_partition(bootstrap, ts_topic):
    consumer = make_consumer(bootstrap)
    try:
        res = consumer.offsets_for_times([TopicPartition(ts_topic, 1, BASE_TS)], timeout=TIMEOUT)
    finally:
        consumer.close()
    assert res[0].error is None
    assert res[0].offset == -1


def test_watermarks(bootstrap, ts_topic):
    consumer = make_consumer(bootstrap)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(ts_topic, 0), timeout=TIMEOUT) == (0, N_TS)
        assert consumer.get_watermark_offsets(TopicPartition(ts_topic, 1), timeout=TIMEOUT) == (0, 0)
    finally:
        consumer.close()


def test_admin_list_offsets(admin, ts_topic):
    tp = TopicPartition(ts_topic, 0)
    specs = {
        "earliest": (OffsetSpec.earliest(), 0),
        "latest": (OffsetSpec.latest(), N_TS),
        "for_timestamp": (OffsetSpec.for_timestamp(BASE_TS + 3_500), 4),
    }
    for name, (spec, want) in specs.items():
        fut = admin.list_offsets({tp: spec}, request_timeout=TIMEOUT)[tp]
        info = fut.result(timeout=TIMEOUT)
        assert info.offset == want, f"{name}: got {info.offset}, want {want}"


def test_admin_list_offsets_max_timestamp(admin, ts_topic):
    """ListOffsets v7 (KIP-734): the offset of the record with the largest timestamp."""
    tp = TopicPartition(ts_topic, 0)
    info = admin.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=TIMEOUT)[tp].result(timeout=TIMEOUT)
    assert info.offset == N_TS - 1
    assert info.timestamp == BASE_TS + (N_TS - 1) * 1000


# ---------------------------------------------------------------- topic admin and configs

def _describe_entry(admin, topic, key):
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    return configs[key]


def _describe(admin, topic, key):
    return _describe_entry(admin, topic, key).value


@pytest.fixture(scope="module")
def admin_topic(admin):
    topic = unique_topic("ck-admin")
    create_topic(admin, topic, 2, {"retention.ms": "86400000", "cleanup.policy": "delete"})
    return topic


def test_create_topic_visible(admin, admin_topic):
    md = admin.list_topics(timeout=TIMEOUT)
    assert admin_topic in md.topics
    assert sorted(md.topics[admin_topic].partitions) == [0, 1]


def test_create_duplicate_fails(admin, admin_topic):
    futures = admin.create_topics([NewTopic(admin_topic, num_partitions=1, replication_factor=1)],
                                  request_timeout=TIMEOUT, operation_timeout=TIMEOUT)
    with pytest.raises(KafkaException) as exc:
        futures[admin_topic].result(timeout=TIMEOUT)
    assert exc.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_describe_configs_shows_created_value(admin, admin_topic):
    entry = _describe_entry(admin, admin_topic, "retention.ms")
    assert entry.value == "86400000"
    assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert _describe(admin, admin_topic, "cleanup.policy") == "delete"


def test_incremental_alter_configs(admin, admin_topic):
    res = ConfigResource(ResourceType.TOPIC, admin_topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
    ])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    wait_until(lambda: _describe(admin, admin_topic, "retention.ms") == "3600000", TIMEOUT,
               "retention.ms to become 3600000")
    # The other config set at creation is untouched by an incremental alter.
    assert _describe(admin, admin_topic, "cleanup.policy") == "delete"


def test_describe_topics(admin, admin_topic):
    desc = admin.describe_topics(TopicCollection([admin_topic]), request_timeout=TIMEOUT)[admin_topic].result(timeout=TIMEOUT)
    assert desc.name == admin_topic
    assert not desc.is_internal
    assert sorted(p.id for p in desc.partitions) == [0, 1]
    for p in desc.partitions:
        assert p.leader is not None


def test_create_partitions(admin):
    topic = unique_topic("ck-grow")
    create_topic(admin, topic, 2)
    admin.create_partitions([NewPartitions(topic, 5)], request_timeout=TIMEOUT,
                            operation_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    wait_for_partitions(admin, topic, 5)


def test_delete_topic(admin):
    topic = unique_topic("ck-del")
    create_topic(admin, topic, 1)
    admin.delete_topics([topic], request_timeout=TIMEOUT, operation_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    wait_until(lambda: topic not in admin.list_topics(timeout=10).topics, TIMEOUT, f"{topic} to disappear")


def test_delete_records(bootstrap, admin):
    topic = unique_topic("ck-delrec")
    create_topic(admin, topic, 1)
    producer = make_producer(bootstrap)
    produce_all(producer, topic, {0: [(None, b"r%d" % i, []) for i in range(10)]})
    tp = TopicPartition(topic, 0, 4)
    deleted = admin.delete_records([tp], request_timeout=TIMEOUT)[tp].result(timeout=TIMEOUT)
    assert deleted.low_watermark == 4
    consumer = make_consumer(bootstrap)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (4, 10)
        # Reading from the beginning now starts at the new log start.
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < 6 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg)
        assert [m.offset() for m in got] == list(range(4, 10))
        assert [m.value() for m in got] == [b"r%d" % i for i in range(4, 10)]
    finally:
        consumer.close()
