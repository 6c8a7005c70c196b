"""Compatibility tests with kafka-python (pure Python client).

kafka-python 3.x turns the idempotent producer on by default; the producers
here keep that default.
Consumers have group_id=None and use assign() + seek(): no group protocol.
"""

import os
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, OffsetSpec
import kafka.errors as Errors

from conftest import (
    CODECS,
    PARTITIONS,
    RECORDS_PER_PARTITION,
    expected_records,
    unique_topic,
    wait_until,
)

TIMEOUT = 30  # seconds
TIMEOUT_MS = TIMEOUT * 1000
BIG = 1024 * 1024  # exactly 1 MiB of value


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def admin(bootstrap):
    client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS,
                              client_id="compat-kafka-python-admin")
    yield client
    client.close()


def create_topic(admin, name, partitions, configs=None):
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1,
                                "configs": configs or {}}}, timeout_ms=TIMEOUT_MS)
    wait_for_partitions(admin, name, partitions)


def wait_for_partitions(admin, name, partitions):
    def ready():
        topics = admin.describe_topics([name])
        if len(topics) != 1 or topics[0]["error_code"] != 0:
            return False
        parts = topics[0]["partitions"]
        return len(parts) == partitions and all(
            p["error_code"] == 0 and p["leader_id"] >= 0 for p in parts)

    wait_until(ready, TIMEOUT, f"topic {name} with {partitions} led partitions")


def make_producer(bootstrap, **extra):
    conf = dict(
        bootstrap_servers=bootstrap,
        # kafka-python 3 enables idempotence by default: kept.
        acks="all",
        linger_ms=20,
        max_in_flight_requests_per_connection=1,  # no reordering on retry
        request_timeout_ms=15000,
        delivery_timeout_ms=TIMEOUT_MS,
        max_block_ms=TIMEOUT_MS,
        allow_auto_create_topics=False,
    )
    conf.update(extra)
    return KafkaProducer(**conf)


def make_consumer(bootstrap, **extra):
    conf = dict(
        bootstrap_servers=bootstrap,
        group_id=None,  # no consumer group: explicit assignment only
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        request_timeout_ms=TIMEOUT_MS,
        fetch_max_wait_ms=200,
    )
    conf.update(extra)
    return KafkaConsumer(**conf)


def kp_records(tag, partition):
    # kafka-python refuses None header values in send() ((str, bytes) only),
    # so the null header value of the shared data becomes an empty one here.
    return [(k, v, [(hk, b"" if hv is None else hv) for hk, hv in h])
            for k, v, h in expected_records(tag, partition)]


def produce_all(producer, topic, per_partition, timestamps=None, flush_every=None):
    futures = []
    for p, recs in per_partition.items():
        for i, (key, value, headers) in enumerate(recs):
            ts = timestamps[p][i] if timestamps is not None else None
            futures.append((p, producer.send(topic, value=value, key=key, headers=headers,
                                             partition=p, timestamp_ms=ts)))
            if flush_every and (i + 1) % flush_every == 0:
                producer.flush(timeout=TIMEOUT)
    producer.flush(timeout=TIMEOUT)
    delivered = []
    for p, fut in futures:
        md = fut.get(timeout=TIMEOUT)
        assert md.partition == p
        delivered.append((p, md.offset))
    return delivered


def consume_exact(consumer, topic, counts, timeout=TIMEOUT):
    tps = [TopicPartition(topic, p) for p in counts]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    got = {p: [] for p in counts}
    deadline = time.monotonic() + timeout
    while any(len(got[p]) < n for p, n in counts.items()):
        if time.monotonic() > deadline:
            have = {p: len(v) for p, v in got.items()}
            raise AssertionError(f"timed out reading {topic}: wanted {counts}, have {have}")
        for tp, recs in consumer.poll(timeout_ms=500).items():
            got[tp.partition].extend(recs)
    return got


def as_tuple(rec):
    return (rec.key, rec.value, list(rec.headers or []))


# ---------------------------------------------------------------- produce / fetch

@pytest.mark.parametrize("codec", CODECS)
def test_produce_fetch_codec(bootstrap, admin, codec):
    topic = unique_topic(f"kp-{codec}")
    create_topic(admin, topic, PARTITIONS)
    expected = {p: kp_records(codec, p) for p in range(PARTITIONS)}

    producer = make_producer(bootstrap, compression_type=None if codec == "none" else codec)
    try:
        delivered = produce_all(producer, topic, expected, flush_every=7)
    finally:
        producer.close(timeout=TIMEOUT)
    for p in range(PARTITIONS):
        offs = sorted(o for (dp, o) in delivered if dp == p)
        assert offs == list(range(RECORDS_PER_PARTITION)), f"partition {p} delivery offsets"

    consumer = make_consumer(bootstrap)
    try:
        got = consume_exact(consumer, topic, {p: RECORDS_PER_PARTITION for p in range(PARTITIONS)})
    finally:
        consumer.close()
    for p in range(PARTITIONS):
        recs = got[p]
        assert [r.offset for r in recs] == list(range(RECORDS_PER_PARTITION)), f"partition {p} offsets"
        assert [as_tuple(r) for r in recs] == expected[p], f"partition {p} records"
        for r in recs:
            assert r.topic == topic
            assert r.timestamp_type == 0 and r.timestamp > 0  # CreateTime


def test_tombstone_and_null_key(bootstrap, admin):
    topic = unique_topic("kp-null")
    create_topic(admin, topic, 1)
    # No (None, None) record: kafka-python's send() refuses a null key with a null value.
    recs = [(b"k", None, []), (None, b"v", []), (b"k2", b"", [("e", b"")]), (b"", b"x", [])]
    producer = make_producer(bootstrap)
    try:
        produce_all(producer, topic, {0: recs})
    finally:
        producer.close(timeout=TIMEOUT)
    consumer = make_consumer(bootstrap)
    try:
        got = consume_exact(consumer, topic, {0: len(recs)})[0]
    finally:
        consumer.close()
    assert [as_tuple(r) for r in got] == recs


# ---------------------------------------------------------------- large record

@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_large_record(bootstrap, admin, codec):
    topic = unique_topic(f"kp-big-{codec}")
    create_topic(admin, topic, 1, {"max.message.bytes": str(4 * BIG)})
    big = os.urandom(BIG)
    recs = [(b"before", b"small-1", []), (b"big", big, [("size", str(BIG).encode())]),
            (b"after", b"small-2", [])]
    producer = make_producer(bootstrap, compression_type=None if codec == "none" else codec,
                             max_request_size=4 * BIG)
    try:
        produce_all(producer, topic, {0: recs})
    finally:
        producer.close(timeout=TIMEOUT)
    consumer = make_consumer(bootstrap, fetch_max_bytes=8 * BIG, max_partition_fetch_bytes=8 * BIG)
    try:
        got = consume_exact(consumer, topic, {0: 3})[0]
    finally:
        consumer.close()
    assert [r.offset for r in got] == [0, 1, 2]
    assert len(got[1].value) == BIG
    assert got[1].value == big
    assert [as_tuple(r) for r in got] == recs


# ---------------------------------------------------------------- offsets for times

N_TS = 12
BASE_TS = (int(time.time() * 1000) // 1000) * 1000 - 3_600_000


@pytest.fixture(scope="module")
def ts_topic(bootstrap, admin):
    """Partition 0: N_TS records at BASE_TS + i*1000 in several batches; partition 1 empty."""
    topic = unique_topic("kp-ts")
    create_topic(admin, topic, 2)
    recs = [(f"k{i}".encode(), f"v{i}".encode(), []) for i in range(N_TS)]
    stamps = {0: [BASE_TS + i * 1000 for i in range(N_TS)]}
    producer = make_producer(bootstrap)
    try:
        produce_all(producer, topic, {0: recs}, timestamps=stamps, flush_every=4)
    finally:
        producer.close(timeout=TIMEOUT)
    return topic


@pytest.fixture
def consumer(bootstrap):
    c = make_consumer(bootstrap)
    yield c
    c.close()


def test_explicit_timestamps_round_trip(consumer, ts_topic):
    got = consume_exact(consumer, ts_topic, {0: N_TS})[0]
    assert [(r.timestamp_type, r.timestamp) for r in got] == [(0, BASE_TS + i * 1000) for i in range(N_TS)]


@pytest.mark.parametrize("target_delta,expected_offset", [
    (-60_000, 0),
    (0, 0),
    (1, 1),
    (5_000, 5),
    (5_500, 6),
    (8_000, 8),
    (11_000, 11),
])
def test_offsets_for_times(consumer, ts_topic, target_delta, expected_offset):
    tp = TopicPartition(ts_topic, 0)
    res = consumer.offsets_for_times({tp: BASE_TS + target_delta}, timeout_ms=TIMEOUT_MS)
    assert res[tp] is not None
    assert res[tp].offset == expected_offset
    assert res[tp].timestamp == BASE_TS + expected_offset * 1000


def test_offsets_for_times_after_last(consumer, ts_topic):
    tp = TopicPartition(ts_topic, 0)
    res = consumer.offsets_for_times({tp: BASE_TS + 11_001}, timeout_ms=TIMEOUT_MS)
    assert res[tp] is None  # no record with a timestamp that late


def test_offsets_for_times_empty_partition(consumer, ts_topic):
    tp = TopicPartition(ts_topic, 1)
    res = consumer.offsets_for_times({tp: BASE_TS}, timeout_ms=TIMEOUT_MS)
    assert res[tp] is None


def test_beginning_and_end_offsets(consumer, ts_topic):
    tps = [TopicPartition(ts_topic, 0), TopicPartition(ts_topic, 1)]
    assert consumer.beginning_offsets(tps, timeout_ms=TIMEOUT_MS) == {tps[0]: 0, tps[1]: 0}
    assert consumer.end_offsets(tps, timeout_ms=TIMEOUT_MS) == {tps[0]: N_TS, tps[1]: 0}


def test_admin_list_partition_offsets(admin, ts_topic):
    tp = TopicPartition(ts_topic, 0)
    assert admin.list_partition_offsets({tp: OffsetSpec.EARLIEST})[tp].offset == 0
    assert admin.list_partition_offsets({tp: OffsetSpec.LATEST})[tp].offset == N_TS
    assert admin.list_partition_offsets({tp: BASE_TS + 3_500})[tp].offset == 4


# ---------------------------------------------------------------- topic admin and configs

def _describe_entry(admin, topic, key):
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, [key])],
                                 config_filter="all")
    return res["topic"][topic][key]


def _describe(admin, topic, key):
    return _describe_entry(admin, topic, key)["value"]


@pytest.fixture(scope="module")
def admin_topic(admin):
    topic = unique_topic("kp-admin")
    create_topic(admin, topic, 2, {"retention.ms": "86400000", "cleanup.policy": "delete"})
    return topic


def test_list_topics(admin, admin_topic):
    assert admin_topic in admin.list_topics()


def test_describe_topics(admin, admin_topic):
    topics = admin.describe_topics([admin_topic])
    assert len(topics) == 1
    t = topics[0]
    assert t["name"] == admin_topic and t["error_code"] == 0
    assert not t["is_internal"]
    assert sorted(p["partition_index"] for p in t["partitions"]) == [0, 1]


def test_create_duplicate_fails(admin, admin_topic):
    with pytest.raises(Errors.TopicAlreadyExistsError):
        admin.create_topics({admin_topic: {"num_partitions": 1, "replication_factor": 1}},
                            timeout_ms=TIMEOUT_MS)


def test_create_duplicate_error_code(admin, admin_topic):
    res = admin.create_topics({admin_topic: {"num_partitions": 1, "replication_factor": 1}},
                              timeout_ms=TIMEOUT_MS, raise_errors=False)
    codes = [t["error_code"] for t in res["topics"] if t["name"] == admin_topic]
    assert codes == [Errors.TopicAlreadyExistsError.errno]  # 36


def test_describe_configs_shows_created_value(admin, admin_topic):
    entry = _describe_entry(admin, admin_topic, "retention.ms")
    assert entry["value"] == "86400000"
    assert entry["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert _describe(admin, admin_topic, "cleanup.policy") == "delete"


def test_incremental_alter_configs(admin, admin_topic):
    res = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, admin_topic,
                                              {"retention.ms": "3600000"})], incremental=True)
    assert res == {"topic": {admin_topic: "OK"}}
    wait_until(lambda: _describe(admin, admin_topic, "retention.ms") == "3600000", TIMEOUT,
               "retention.ms to become 3600000")
    assert _describe(admin, admin_topic, "cleanup.policy") == "delete"


def test_create_partitions(admin):
    topic = unique_topic("kp-grow")
    create_topic(admin, topic, 2)
    admin.create_partitions({topic: 5}, timeout_ms=TIMEOUT_MS)
    wait_for_partitions(admin, topic, 5)


def test_delete_topic(admin):
    topic = unique_topic("kp-del")
    create_topic(admin, topic, 1)
    admin.delete_topics([topic], timeout_ms=TIMEOUT_MS)
    wait_until(lambda: topic not in admin.list_topics(), TIMEOUT, f"{topic} to disappear")
