"""Consumer groups with kafka-python (pure Python client).

A KafkaConsumer with group_id subscribes, consumes, commits, leaves; a second
consumer of the same group resumes exactly at the committed offsets. Two
members then share the partitions. The producer keeps kafka-python 3's
default idempotence.
"""

import threading
import time

import kafka.errors as Errors
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from conftest import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS, WAIT, RUN_ID, unique_name, wait_until

TIMEOUT = 30
TIMEOUT_MS = TIMEOUT * 1000
PARTITIONS = 3
PER_PARTITION = 30


@pytest.fixture(scope="module")
def admin(bootstrap):
    client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS,
                              client_id="compat-groups-kafka-python-admin")
    yield client
    client.close()


def create_topic(admin, name, partitions):
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}}, timeout_ms=TIMEOUT_MS)

    def ready():
        topics = admin.describe_topics([name])
        if len(topics) != 1 or topics[0]["error_code"] != 0:
            return False
        parts = topics[0]["partitions"]
        return len(parts) == partitions and all(p["error_code"] == 0 and p["leader_id"] >= 0 for p in parts)

    wait_until(ready, TIMEOUT, f"topic {name} with {partitions} led partitions")


def produce(bootstrap, topic, start, count):
    """count records into every partition, values p<P>-<i> for i in start..start+count-1."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             max_in_flight_requests_per_connection=1, request_timeout_ms=15000,
                             delivery_timeout_ms=TIMEOUT_MS, max_block_ms=TIMEOUT_MS,
                             allow_auto_create_topics=False)
    try:
        futs = [producer.send(topic, key=f"k{i}".encode(), value=f"p{p}-{i}".encode(), partition=p)
                for p in range(PARTITIONS) for i in range(start, start + count)]
        producer.flush(timeout=TIMEOUT)
        for f in futs:
            f.get(timeout=TIMEOUT)
    finally:
        producer.close(timeout=10)


def group_consumer(bootstrap, group, client_id):
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        max_poll_interval_ms=30000,
        request_timeout_ms=TIMEOUT_MS + 5000,  # must exceed the session timeout
        fetch_max_wait_ms=200,
        allow_auto_create_topics=False,
    )


def poll_records(consumers, want, timeout=WAIT):
    """Polls the consumers in turn until `want` records arrived in total; {consumer index: [records]}."""
    got = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < want and time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            for recs in c.poll(timeout_ms=100).values():
                got[i].extend(recs)
    n = sum(len(v) for v in got.values())
    assert n >= want, f"consumed {n} records within {timeout}s, want {want}"
    return got


def test_subscribe_commit_and_resume(bootstrap, admin):
    topic = unique_name("kp")
    group = unique_name("kp")
    create_topic(admin, topic, PARTITIONS)
    produce(bootstrap, topic, 0, PER_PARTITION)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        c1 = group_consumer(bootstrap, group, "kp-1")
        try:
            c1.subscribe([topic])
            got = poll_records([c1], PARTITIONS * PER_PARTITION)[0]
            assert c1.assignment() == set(tps), f"assignment {c1.assignment()}"
            values = sorted((r.partition, r.offset, r.value.decode()) for r in got)
            assert values == sorted((p, i, f"p{p}-{i}") for p in range(PARTITIONS) for i in range(PER_PARTITION))
            c1.commit()
            for tp in tps:
                assert c1.committed(tp) == PER_PARTITION, f"{tp}: committed {c1.committed(tp)}"

            # Admin view of the active group.
            groups = {g["group_id"]: g for g in admin.list_groups()}
            assert group in groups, f"{group} not in list_groups"
            assert groups[group]["protocol_type"] == "consumer", groups[group]
            d = admin.describe_groups([group])[group]
            assert d["group_state"] == "Stable", d
            assert d["protocol_type"] == "consumer" and d["protocol_data"] == "range", d
            assert len(d["members"]) == 1 and d["members"][0]["client_id"] == "kp-1", d["members"]
            offs = admin.list_group_offsets(group)[group]
            assert {tp: om.offset for tp, om in offs.items()} == {tp: PER_PARTITION for tp in tps}, offs
        finally:
            c1.close()  # LeaveGroup

        d = admin.describe_groups([group])[group]
        assert d["group_state"] == "Empty" and not d["members"], d

        produce(bootstrap, topic, PER_PARTITION, 10)
        c2 = group_consumer(bootstrap, group, "kp-2")
        try:
            c2.subscribe([topic])
            got = poll_records([c2], PARTITIONS * 10)[0]
            extra = [r for recs in c2.poll(timeout_ms=300).values() for r in recs]
            got += extra
            by_part = {}
            for r in got:
                by_part.setdefault(r.partition, []).append(r.offset)
            want = list(range(PER_PARTITION, PER_PARTITION + 10))
            assert by_part == {p: want for p in range(PARTITIONS)}, f"resumed at {by_part}"
            # Commit with explicit offsets and metadata.
            c2.commit({tps[0]: OffsetAndMetadata(PER_PARTITION + 5, "half", -1)})
            om = c2.committed(tps[0], metadata=True)
            assert om.offset == PER_PARTITION + 5 and om.metadata == "half", om
            c2.commit()
            for tp in tps:
                assert c2.committed(tp) == PER_PARTITION + 10
        finally:
            c2.close()
        result = admin.delete_groups([group])
        assert result == {group: "OK"} or result.get(group) in ("OK", None), result
        assert group not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.delete_topics([topic], timeout_ms=TIMEOUT_MS)


class PollThread(threading.Thread):
    """Polls one KafkaConsumer on its own thread (a consumer blocks in poll() while its group
    rebalances, so members of one group cannot share a thread) and commits after each poll."""

    def __init__(self, consumer, name, seen, lock):
        super().__init__(name=name, daemon=True)
        self.consumer = consumer
        self.member = name
        self.seen = seen
        self.lock = lock
        self.stop_requested = False
        self.assignment = frozenset()
        self.commit_failures = 0
        self.error = None

    def run(self):
        try:
            while not self.stop_requested:
                batch = self.consumer.poll(timeout_ms=100)
                with self.lock:
                    for recs in batch.values():
                        for r in recs:
                            self.seen.setdefault((r.partition, r.offset), []).append(self.member)
                if batch:
                    try:
                        self.consumer.commit()
                    except (Errors.CommitFailedError, Errors.RebalanceInProgressError):
                        self.commit_failures += 1
                self.assignment = frozenset(tp.partition for tp in self.consumer.assignment())
            self.consumer.commit()
        except Exception as exc:
            self.error = exc
        finally:
            self.consumer.close()


def test_two_members_share_partitions(bootstrap, admin):
    topic = unique_name("kp-two")
    group = unique_name("kp-two")
    create_topic(admin, topic, PARTITIONS)
    produce(bootstrap, topic, 0, PER_PARTITION)
    tps = {TopicPartition(topic, p) for p in range(PARTITIONS)}
    seen, lock = {}, threading.Lock()
    threads = []
    try:
        for name in ("kp-a", "kp-b"):
            c = group_consumer(bootstrap, group, name)
            c.subscribe([topic])
            threads.append(PollThread(c, name, seen, lock))
        for th in threads:
            th.start()
        a, b = threads

        def split():
            for th in threads:
                assert th.error is None, f"{th.member}: {th.error!r}"
            with lock:
                n = len(seen)
            return (a.assignment and b.assignment and a.assignment | b.assignment == set(range(PARTITIONS))
                    and not a.assignment & b.assignment and n == PARTITIONS * PER_PARTITION)

        wait_until(split, WAIT, "two members splitting the partitions and everything consumed")

        def committed():
            offs = admin.list_group_offsets(group)[group]
            return {tp: om.offset for tp, om in offs.items()} == {tp: PER_PARTITION for tp in tps} or offs

        assert wait_until(committed, WAIT, "committed offsets at the end offsets") is True
        d = admin.describe_groups([group])[group]
        assert d["group_state"] == "Stable" and len(d["members"]) == 2, d
        assigned = sorted(p for m in d["members"] for t in m["member_assignment"]["assigned_partitions"]
                          for p in t["partitions"])
        assert assigned == list(range(PARTITIONS)), d["members"]
    finally:
        for th in threads:
            th.stop_requested = True
        for th in threads:
            th.join(20)
        try:
            admin.delete_groups([group])
        finally:
            admin.delete_topics([topic], timeout_ms=TIMEOUT_MS)
