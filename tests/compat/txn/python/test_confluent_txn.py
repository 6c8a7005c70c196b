"""Transactions and the idempotent producer with confluent-kafka (librdkafka).

- commit / abort: read_committed returns only committed records, read_uncommitted also the
  aborted ones; markers take offsets; query_watermark_offsets of a read_committed consumer is
  the last stable offset;
- an open transaction holds back read_committed (and its high watermark) until it commits;
- send_offsets_to_transaction: the group's offset moves with a commit, not with an abort;
- enable.idempotence=true: 2000 records in many small batches land exactly once, in order.
"""

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import ConsumerGroupTopicPartitions

from conftest import (TIMEOUT, WAIT, Delivered, make_producer, make_txn_producer, create_topic,
                      produce, unique_name, wait_until)


def values(prefix, n):
    return [f"{prefix}-{i}" for i in range(n)]


def test_commit_and_abort(bootstrap, admin, readers):
    """Committed, aborted, committed transaction on one partition: offsets 0..9 (marker 10),
    11..15 (abort marker 16), 17..26 (marker 27)."""
    topic = create_topic(admin, 1)
    p = make_txn_producer(bootstrap, "compat-txn-confluent-commit-abort", unique_name("txn"))

    p.begin_transaction()
    c1 = produce(p, topic, 0, values("c1", 10))
    p.commit_transaction(TIMEOUT)
    p.begin_transaction()
    aborted = produce(p, topic, 0, values("aborted", 5))  # flushed: in the log before the abort
    p.abort_transaction(TIMEOUT)
    p.begin_transaction()
    c3 = produce(p, topic, 0, values("c3", 10))
    p.commit_transaction(TIMEOUT)

    assert c1 == list(range(0, 10)), f"first transaction at offsets {c1}"
    assert aborted == list(range(11, 16)), f"aborted transaction at offsets {aborted} (commit marker at 10)"
    assert c3 == list(range(17, 27)), f"third transaction at offsets {c3} (abort marker at 16)"

    rc = readers(bootstrap, topic, 1, "read_committed").poll_until(20).poll_for()
    assert rc.values() == values("c1", 10) + values("c3", 10), f"read_committed returned {rc.values()}"
    assert rc.offsets() == list(range(0, 10)) + list(range(17, 27)), f"read_committed offsets {rc.offsets()}"
    ru = readers(bootstrap, topic, 1, "read_uncommitted").poll_until(25).poll_for()
    assert ru.values() == values("c1", 10) + values("aborted", 5) + values("c3", 10), \
        f"read_uncommitted returned {ru.values()}"
    assert ru.offsets() == list(range(0, 10)) + list(range(11, 16)) + list(range(17, 27))

    # Both "ends" include the last commit marker (it may be written just after the commit returns).
    wait_until(lambda: rc.high_watermark() == 28 and ru.high_watermark() == 28, WAIT,
               "LSO and high watermark 28")


def test_open_transaction_holds_back_read_committed(bootstrap, admin, readers):
    """A committed transaction (0..2, marker 3), an open one (4, 5) and two non-transactional
    records (6, 7): read_committed stops at the LSO 4 until the open transaction commits."""
    topic = create_topic(admin, 1)
    first = make_txn_producer(bootstrap, "compat-txn-confluent-lso-first", unique_name("txn"))
    first.begin_transaction()
    assert produce(first, topic, 0, values("committed", 3)) == [0, 1, 2]
    first.commit_transaction(TIMEOUT)

    open_ = make_txn_producer(bootstrap, "compat-txn-confluent-lso-open", unique_name("txn"))
    open_.begin_transaction()
    assert produce(open_, topic, 0, values("open", 2)) == [4, 5]
    plain = make_producer(bootstrap, "compat-txn-confluent-lso-plain", **{"enable.idempotence": True})
    assert produce(plain, topic, 0, values("after", 2)) == [6, 7]

    rc = readers(bootstrap, topic, 1, "read_committed")
    ru = readers(bootstrap, topic, 1, "read_uncommitted")
    assert rc.high_watermark() == 4, "read_committed ListOffsets should give the LSO (first offset of the open txn)"
    assert ru.high_watermark() == 8, "read_uncommitted ListOffsets should give the high watermark"
    rc.poll_until(3).poll_for(2.0)
    assert rc.values() == values("committed", 3), f"read_committed returned {rc.values()} while the txn is open"
    ru.poll_until(7).poll_for()
    everything = values("committed", 3) + values("open", 2) + values("after", 2)
    assert ru.values() == everything, f"read_uncommitted returned {ru.values()}"

    open_.commit_transaction(TIMEOUT)
    rc.poll_until(7).poll_for()
    assert rc.values() == everything, f"after the commit read_committed has {rc.values()}"
    assert rc.offsets() == [0, 1, 2, 4, 5, 6, 7]
    wait_until(lambda: rc.high_watermark() == 9, WAIT, "LSO 9 after the commit (marker at 8)")


def group_offset(admin, group, topic):
    """The group's committed offset of partition 0 via the admin API (None when it has none)."""
    fs = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])], request_timeout=TIMEOUT)
    res = fs[group].result(timeout=TIMEOUT)
    for tp in res.topic_partitions:
        if tp.topic == topic and tp.partition == 0:
            assert tp.error is None, f"offset fetch error {tp.error}"
            return tp.offset if tp.offset >= 0 else None
    return None


def consume_batch(consumer, max_records):
    """Up to max_records from one consume() that returns something (bounded wait)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        msgs = consumer.consume(num_messages=max_records, timeout=0.5)
        for m in msgs:
            if m.error() is not None:
                raise KafkaException(m.error())
        if msgs:
            return msgs
    raise AssertionError(f"the group consumer got nothing within {WAIT}s")


def test_send_offsets_to_transaction(bootstrap, admin, readers):
    """Consume-transform-produce from a 10-record input: the group's offset appears only with
    the commit, an aborted transaction leaves it (and hides its outputs); after rewinding and
    redoing, every input is in the output exactly once."""
    n = 10
    src = create_topic(admin, 1)
    dst = create_topic(admin, 1)
    group = unique_name("group")
    produce(make_producer(bootstrap, "compat-txn-confluent-input", **{"enable.idempotence": True}),
            src, 0, values("in", n))

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": "compat-txn-confluent-eos-consumer",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "fetch.wait.max.ms": 200,
    })
    p = make_txn_producer(bootstrap, "compat-txn-confluent-eos", unique_name("txn"))
    try:
        consumer.subscribe([src])

        def step(batch_size):
            """One transaction: a batch in, one output per input, the consumer's offsets in."""
            msgs = consume_batch(consumer, batch_size)
            p.begin_transaction()
            for m in msgs:
                p.produce(dst, key=m.key(), value=b"out-" + m.value(), partition=0)
            assert p.flush(TIMEOUT) == 0
            positions = consumer.position(consumer.assignment())
            p.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TIMEOUT)
            return msgs[-1].offset() + 1

        next1 = step(4)
        assert group_offset(admin, group, src) is None, "the group has an offset before the commit"
        p.commit_transaction(TIMEOUT)
        wait_until(lambda: group_offset(admin, group, src) == next1, WAIT, f"group offset {next1} after the commit")
        committed = consumer.committed([TopicPartition(src, 0)], timeout=TIMEOUT)[0].offset
        assert committed == next1, f"Consumer.committed says {committed}, want {next1}"

        next2 = step(4)
        assert next2 > next1
        p.abort_transaction(TIMEOUT)
        time.sleep(1.0)  # time for a wrongly applied offset to show up
        assert group_offset(admin, group, src) == next1, "the aborted transaction moved the group's offset"
        committed = consumer.committed([TopicPartition(src, 0)], timeout=TIMEOUT)[0].offset
        assert committed == next1, f"after the abort Consumer.committed says {committed}, want {next1}"

        # Rewind to the committed offset (what an application does after an abort) and go on.
        consumer.seek(TopicPartition(src, 0, next1))
        nxt = next1
        while nxt < n:
            nxt = step(4)
            p.commit_transaction(TIMEOUT)
        assert nxt == n
        wait_until(lambda: group_offset(admin, group, src) == n, WAIT, f"group offset {n} at the end")
    finally:
        consumer.close()

    rc = readers(bootstrap, dst, 1, "read_committed").poll_until(n).poll_for()
    assert rc.values() == values("out-in", n), f"read_committed output {rc.values()}"
    ru = readers(bootstrap, dst, 1, "read_uncommitted").poll_until(n + next2 - next1).poll_for()
    assert len(ru.values()) == n + next2 - next1, \
        f"read_uncommitted output has {len(ru.values())} records, want {n} committed + {next2 - next1} aborted"


def test_idempotent_producer_exactly_once(bootstrap, admin, readers):
    """enable.idempotence=true, 2000 keyed records in small batches (many requests in flight)
    to 3 partitions: contiguous offsets per partition in send order, each record read once."""
    n = 2000
    topic = create_topic(admin, 3)
    p = make_producer(bootstrap, "compat-txn-confluent-idempotent", **{
        "enable.idempotence": True, "acks": "all", "linger.ms": 0, "batch.size": 2048,
        "max.in.flight.requests.per.connection": 5})
    d = Delivered()
    pad = "x" * 100
    for i in range(n):
        p.produce(topic, key=f"key-{i}".encode(), value=f"v-{i}-{pad}".encode(), on_delivery=d)
        p.poll(0)
    assert p.flush(TIMEOUT) == 0
    assert not d.errors, f"delivery errors: {d.errors[:3]}"
    assert len(d.records) == n

    sent = {}  # partition -> values in offset order
    for part, off, v in sorted(d.records):
        sent.setdefault(part, []).append((off, v))
    assert sorted(sent) == [0, 1, 2], f"keys landed in partitions {sorted(sent)}"
    for part, recs in sent.items():
        assert [o for o, _ in recs] == list(range(len(recs))), f"partition {part}: offsets not contiguous from 0"
        idx = [int(v.split("-")[1]) for _, v in recs]
        assert idx == sorted(idx), f"partition {part}: offsets are not in send order"

    r = readers(bootstrap, topic, 3, "read_uncommitted").poll_until(n).poll_for()
    assert len(r.records) == n, f"consumed {len(r.records)} records, want {n}"
    for part, recs in sent.items():
        assert r.values(part) == [v for _, v in recs], f"partition {part}: consumed values differ"
        assert r.high_watermark(part) == len(recs), f"partition {part}: high watermark != {len(recs)}"
