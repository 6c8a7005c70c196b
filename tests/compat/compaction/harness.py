"""Compacted topics (cleanup.policy=compact) through a real client (see README.md).

  harness.py PATH_TO_SHOAL [--etcd]

With --etcd the server is `shoal agent` on a throw-away etcd (metadata) and a local
directory (objects) instead of the playground's SQLite.

Starts its own Shoal playground with a 1 s cleaner interval, then with confluent-kafka:
1. a record without a key is refused with INVALID_RECORD on a compacted topic;
2. 100,000 records over 1,000 keys (some keys end deleted by a tombstone, some deleted and
   written again), short min.compaction.lag.ms / delete.retention.ms; waits for cleaning
   and reads the partitions from the beginning: the latest value of every live key is
   there, only it, deleted keys are gone once delete.retention.ms has passed, offsets
   only increase, and the high watermark did not move;
3. a Kafka Connect-style config topic (one partition, connector / task / target-state
   records, updates and a deleted connector) survives a restart of the server: after it,
   the compacted log still gives the latest config, and writing on works.
The cleaner's GETs and PUTs are read from the metrics and printed per MB cleaned.

Last line: `compaction: passed` or `compaction: failed: REASON`; exit status 0 / 1.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# The server start/stop/restart helpers are shared with the txn-restart test.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "txn-restart"))
import servers  # noqa: E402
from servers import Failed  # noqa: E402

RECORDS = int(os.environ.get("COMPACTION_RECORDS", "100000"))
KEYS = int(os.environ.get("COMPACTION_KEYS", "1000"))
PARTITIONS = 4
DELETE_RETENTION_MS = 4000
TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": str(DELETE_RETENTION_MS),
    "min.cleanable.dirty.ratio": "0.01",
}


def check(cond, what):
    if not cond:
        raise Failed(what)


def create(admin, name, partitions, configs):
    fs = admin.create_topics([NewTopic(name, partitions, 1, config=configs)], request_timeout=15)
    fs[name].result(15)


def produce(bootstrap, topic, records):
    """Produces (partition, key, value) records in order; returns how many failed, by error."""
    errors = {}

    def done(err, _msg):
        if err is not None:
            errors[err.code()] = errors.get(err.code(), 0) + 1

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True,
                  "batch.num.messages": 2000})
    for partition, key, value in records:
        while True:
            try:
                p.produce(topic, key=key, value=value, partition=partition, on_delivery=done)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    check(p.flush(60) == 0, "producer did not deliver everything within 60 s")
    return errors


def read_all(bootstrap, topic, partitions, isolation="read_uncommitted"):
    """Reads every partition from the beginning to its high watermark: per partition the
    list of (offset, key, value), and the high watermarks."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"compaction-check-{time.time()}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "isolation.level": isolation})
    try:
        hw = {}
        for p in range(partitions):
            _lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            hw[p] = hi
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        out = {p: [] for p in range(partitions)}
        done = {p for p in range(partitions) if hw[p] == 0}
        deadline = time.time() + 60
        while len(done) < partitions:
            check(time.time() < deadline, f"reading {topic} back took over 60 s")
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if m.offset() >= hw[m.partition()]:
                        done.add(m.partition())
                    continue
                raise Failed(f"consumer error: {m.error()}")
            out[m.partition()].append((m.offset(), m.key(), m.value()))
            if m.offset() + 1 >= hw[m.partition()]:
                done.add(m.partition())
        return out, hw
    finally:
        c.close()


def metric(url, name, label):
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(f'{name}{{what="{label}"}}'):
            return float(line.split()[-1])
    return 0.0


def keyless_refused(bootstrap, topic):
    result = {}

    def done(err, _msg):
        result["err"] = err

    p = Producer({"bootstrap.servers": bootstrap, "retries": 0})
    p.produce(topic, value=b"no key", partition=0, on_delivery=done)
    p.flush(30)
    err = result.get("err")
    check(err is not None and err.code() == KafkaError.INVALID_RECORD,
          f"a keyless record on a compacted topic got {err}, not INVALID_RECORD")


def transactions(bootstrap, topic, latest):
    """One committed transaction (key-1's latest value), one whose only record a plain write
    supersedes (key-4: the cleaner drops its commit marker later), one aborted (three
    keys), then one more committed by the same producer (key-12: a read_committed consumer
    sees it only if the aborted transaction's marker is still there to end it)."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "compaction-txn"})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, key=b"key-1", value=b"txn:committed", partition=1 % PARTITIONS)
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, key=b"key-4", value=b"txn:superseded", partition=4 % PARTITIONS)
    p.commit_transaction(30)
    p.begin_transaction()
    for k in (2, 3, 11):
        p.produce(topic, key=f"key-{k}".encode(), value=b"txn:aborted", partition=k % PARTITIONS)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce(topic, key=b"key-12", value=b"txn:after-abort", partition=12 % PARTITIONS)
    p.commit_transaction(30)
    errors = produce(bootstrap, topic, [(4 % PARTITIONS, b"key-4", b"plain:after-txn")])
    check(not errors, f"produce errors: {errors}")
    latest[b"key-1"] = b"txn:committed"
    latest[b"key-4"] = b"plain:after-txn"
    latest[b"key-12"] = b"txn:after-abort"


def changelog(bootstrap, metrics_url):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = "changelog"
    create(admin, topic, PARTITIONS, TOPIC_CONFIGS)
    keyless_refused(bootstrap, topic)
    # Every key is written RECORDS / KEYS times. Keys divisible by 10 end deleted; keys
    # ending in 5 are deleted half way and written again.
    latest = {}
    records = []
    for i in range(RECORDS):
        k = i % KEYS
        key = f"key-{k}".encode()
        partition = k % PARTITIONS
        rounds = RECORDS // KEYS
        r = i // KEYS
        if k % 10 == 0 and r == rounds - 1:
            value = None
        elif k % 10 == 5 and r == rounds // 2:
            value = None
        else:
            value = f"{k}:{r}".encode()
        records.append((partition, key, value))
        latest[key] = value
    # The last round holds the tombstones of the keys that end deleted: written after
    # `tombstones_from`, so none may be gone before delete.retention.ms from then (the
    # cleaner may stamp their horizon while later records are still being written).
    last_round = (RECORDS // KEYS - 1) * KEYS
    errors = produce(bootstrap, topic, records[:last_round])
    check(not errors, f"produce errors: {errors}")
    tombstones_from = time.time()
    errors = produce(bootstrap, topic, records[last_round:])
    check(not errors, f"produce errors: {errors}")
    transactions(bootstrap, topic, latest)
    live = {k: v for k, v in latest.items() if v is not None}
    deleted = {k for k, v in latest.items() if v is None}
    # Wait for cleaning: the log holds only each key's latest record (tombstones included),
    # then, past delete.retention.ms, only the live keys.
    # Read uncommitted: the aborted transaction's records must be gone too.
    deadline = time.time() + 90
    last = None
    hw0 = None
    while True:
        data, hw = read_all(bootstrap, topic, PARTITIONS)
        hw0 = hw0 or hw
        got = {}
        for p, recs in data.items():
            offsets = [o for o, _, _ in recs]
            check(offsets == sorted(set(offsets)), f"offsets of partition {p} do not only increase")
            for _o, k, v in recs:
                got.setdefault(k, []).append(v)
        total = sum(len(r) for r in data.values())
        last = (total, sum(hw.values()))
        tombstones_gone = not any(k in got for k in deleted)
        if all(got.get(k) == [v] for k, v in live.items()) and tombstones_gone and total == len(live):
            break
        check(time.time() < deadline,
              f"not cleaned within 90 s: {total} records left for {len(live)} live keys, "
              f"deleted keys still present: {sum(1 for k in deleted if k in got)}")
        time.sleep(1)
    check(time.time() - tombstones_from >= DELETE_RETENTION_MS / 1000,
          "tombstones went before delete.retention.ms had passed")
    check(hw == hw0 and sum(hw.values()) > RECORDS, f"high watermarks moved: {hw0} then {hw}")
    committed, _ = read_all(bootstrap, topic, PARTITIONS, "read_committed")
    check(sorted(committed.items()) == sorted(data.items()), "read_committed reads another log")
    gets = metric(metrics_url, "shoal_cleaner_total", "gets")
    puts = metric(metrics_url, "shoal_cleaner_total", "puts")
    cleaned = metric(metrics_url, "shoal_cleaner_total", "cleaned_bytes")
    removed = metric(metrics_url, "shoal_cleaner_total", "removed_records")
    check(puts > 0 and removed >= RECORDS - len(live), f"cleaner metrics: puts {puts}, removed {removed}")
    mb = max(cleaned / 1e6, 1e-9)
    print(f"changelog: {last[0]} records left of {RECORDS}; cleaner went over {cleaned / 1e6:.2f} MB "
          f"with {gets:.0f} GETs and {puts:.0f} PUTs ({gets / mb:.1f} GET/MB, {puts / mb:.1f} PUT/MB)")


def connect_configs(server, metrics_url):
    bootstrap = server.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = "connect-configs"
    create(admin, topic, 1, TOPIC_CONFIGS)
    records = []
    for gen in range(50):
        for name in ("orders", "users", "audit"):
            records.append((0, f"connector-{name}".encode(), f'{{"gen":{gen},"tasks.max":2}}'.encode()))
            records.append((0, f"task-{name}-0".encode(), f'{{"gen":{gen}}}'.encode()))
            records.append((0, f"commit-{name}".encode(), f'{{"tasks":1,"gen":{gen}}}'.encode()))
            records.append((0, f"target-state-{name}".encode(), b'{"state":"STARTED"}'))
    # The audit connector is deleted, as Connect deletes one: tombstones for its records.
    for key in (b"connector-audit", b"task-audit-0", b"commit-audit", b"target-state-audit"):
        records.append((0, key, None))
    errors = produce(bootstrap, topic, records)
    check(not errors, f"config produce errors: {errors}")
    want = {}
    for _p, k, v in records:
        want[k] = v
    want = {k: v for k, v in want.items() if v is not None}
    server.stop()
    server.start()
    keyless_refused(server.bootstrap, topic)
    # After the restart, the cleaner (a job claimed anew) still cleans and the config
    # reads back as Connect's KafkaConfigBackingStore would rebuild it.
    deadline = time.time() + 60
    while True:
        data, hw = read_all(server.bootstrap, topic, 1)
        state = {}
        for _o, k, v in data[0]:
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        offsets = [o for o, _, _ in data[0]]
        check(offsets == sorted(set(offsets)), "config topic offsets do not only increase")
        check(state == want, f"config state after restart differs: {sorted(state)} vs {sorted(want)}")
        if len(data[0]) == len(want):
            break
        check(time.time() < deadline, f"config topic not cleaned after restart: {len(data[0])} records")
        time.sleep(1)
    check(hw[0] == len(records), f"config topic high watermark {hw[0]}, not {len(records)}")
    # Writing on after the restart: the new value wins.
    errors = produce(server.bootstrap, topic, [(0, b"connector-orders", b'{"gen":99}')])
    check(not errors, f"produce after restart: {errors}")
    data, _ = read_all(server.bootstrap, topic, 1)
    check([v for _o, k, v in data[0] if k == b"connector-orders"][-1] == b'{"gen":99}',
          "the update after the restart is not the latest")
    print(f"connect-configs: {len(records)} records, {len(data[0])} after cleaning and restart")


def start_etcd(work):
    """A throw-away etcd on loopback ports (the `etcd` binary on PATH); its URL."""
    client, peer = servers.free_port(), servers.free_port()
    c, p = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    log = open(os.path.join(work, "etcd.log"), "ab")
    proc = subprocess.Popen(
        ["etcd", "--name", "t", "--data-dir", os.path.join(work, "etcd"),
         "--listen-client-urls", c, "--advertise-client-urls", c,
         "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
         "--initial-cluster", f"t={p}"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=servers.die_with_parent)
    deadline = time.time() + 20
    while not servers.port_open(client):
        check(proc.poll() is None and time.time() < deadline, "etcd did not start")
        time.sleep(0.1)
    return proc, f"etcd://127.0.0.1:{client}/compaction"


def main():
    binary = sys.argv[1]
    etcd_mode = len(sys.argv) > 2 and sys.argv[2] == "--etcd"
    work = tempfile.mkdtemp(prefix="shoal-compaction.")
    metrics_port = servers.free_port()
    os.environ["SHOAL_CLEANER_INTERVAL"] = "1s"
    os.environ["SHOAL_METRICS_LISTEN"] = f"127.0.0.1:{metrics_port}"
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    etcd = None
    args = None
    ok = False
    if etcd_mode:
        # An agent on etcd metadata and a local object store instead of the playground.
        try:
            etcd, url = start_etcd(work)
        except Failed as exc:
            print(f"compaction: failed: {exc}")
            return 1
        store = os.path.join(work, "objects")
        os.makedirs(store)
        args = ["agent", "--metadata", url, "--object-store", f"file://{store}"]
    server = servers.ShoalServer(binary, work, servers.free_port(), args=args)
    try:
        server.start()
        changelog(server.bootstrap, metrics_url)
        connect_configs(server, metrics_url)
        ok = True
    except (Failed, KafkaException, RuntimeError) as exc:
        print(f"--- shoal log tail ---\n{server.log_tail()}")
        print(f"compaction: failed: {exc}")
    finally:
        server.stop()
        if etcd is not None:
            etcd.kill()
            etcd.wait(10)
        if ok and os.environ.get("COMPACTION_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    if ok:
        print("compaction: passed")
        return 0
    return 1


if __name__ == "__main__":
    servers.run(main, int(os.environ.get("COMPACTION_SECONDS", "300")))
