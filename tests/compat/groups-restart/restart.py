"""A consumer group lives through a restart of the agent.

Starts `shoal playground` itself (path given as argv[1]) on a free loopback port,
produces keyed records to a 6-partition topic, runs three confluent-kafka consumers in
one group that commit as they go, kills the agent with SIGKILL half-way (and once more
with SIGTERM), restarts it on the same port and data directory, and checks that:
  - every acknowledged record is consumed at least once (nothing skipped),
  - the group's committed offsets end at the end offsets of every partition.
Duplicates after a restart are expected (commits in flight at the kill are lost) and
reported, not failed. Exit status 0 on success; last line `groups-restart: N passed, M failed`.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6
RECORDS = 6000


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Playground:
    def __init__(self, binary, data_dir, port):
        self.binary, self.data_dir, self.port = binary, data_dir, port
        self.proc = None
        self.log = open(os.path.join(data_dir, "shoal.log"), "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "playground", "--data-dir", os.path.join(self.data_dir, "d"),
             "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("shoal exited at start")
                time.sleep(0.1)
        raise RuntimeError("shoal did not start listening")

    def stop(self, sig):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)


def main():
    binary = os.path.abspath(sys.argv[1])
    data = tempfile.mkdtemp(prefix="shoal-groups-restart.")
    port = free_port()
    bs = f"127.0.0.1:{port}"
    pg = Playground(binary, data, port)
    pg.start()
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
            print("ok:", what, flush=True)
        else:
            failed += 1
            print("FAILED:", what, flush=True)

    try:
        run = uuid.uuid4().hex[:8]
        topic, group = f"restart-{run}", f"restart-group-{run}"
        admin = AdminClient({"bootstrap.servers": bs})
        for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
            f.result(15)
        acked = set()

        def on_ack(err, msg):
            if err is None:
                acked.add((msg.partition(), msg.offset()))

        p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 5})
        for i in range(RECORDS):
            p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % PARTITIONS,
                      on_delivery=on_ack)
            if i % 500 == 0:
                p.poll(0)
        check(p.flush(30) == 0, "all records delivered")
        check(len(acked) == RECORDS, f"{len(acked)} of {RECORDS} acknowledged")

        seen = {}
        lock = threading.Lock()
        stop = threading.Event()
        # Every member makes its final commit before any member leaves: a leave starts a
        # rebalance that revokes the others' partitions, and their final commit would
        # then have nothing to commit.
        committed_all = threading.Barrier(3, timeout=60)

        def consume(name):
            c = Consumer({"bootstrap.servers": bs, "group.id": group, "client.id": name,
                          "auto.offset.reset": "earliest", "enable.auto.commit": False,
                          "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                          "reconnect.backoff.max.ms": 500})
            c.subscribe([topic])
            n = 0
            while not stop.is_set():
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                with lock:
                    key = (m.partition(), m.offset())
                    seen[key] = seen.get(key, 0) + 1
                n += 1
                # Slow enough that the restarts happen mid-stream.
                time.sleep(0.0005)
                if n % 20 == 0:
                    try:
                        c.commit(m, asynchronous=False)
                    except Exception:
                        pass  # coordinator restarting: the next commit covers it
            for _ in range(5):
                try:
                    c.commit(asynchronous=False)
                    break
                except Exception:
                    time.sleep(0.5)  # e.g. a rebalance finishing after the last restart
            try:
                committed_all.wait()
            except threading.BrokenBarrierError:
                pass
            c.close()

        threads = [threading.Thread(target=consume, args=(f"c{i}",)) for i in range(3)]
        for t in threads:
            t.start()

        def wait_for(count, limit):
            deadline = time.time() + limit
            while time.time() < deadline:
                with lock:
                    if len(seen) >= count:
                        return True
                time.sleep(0.1)
            return False

        check(wait_for(RECORDS // 3, 60), "a third consumed before the first restart")
        pg.stop(signal.SIGKILL)
        time.sleep(1)
        pg.start()
        check(wait_for(2 * RECORDS // 3, 90), "two thirds consumed after a SIGKILL restart")
        pg.stop(signal.SIGTERM)
        pg.start()
        check(wait_for(RECORDS, 120), "everything consumed after a SIGTERM restart")
        time.sleep(2)  # let the last commits land
        stop.set()
        for t in threads:
            t.join(30)
        with lock:
            missing = acked - set(seen)
            dups = sum(v - 1 for v in seen.values())
        check(not missing, f"no acknowledged record skipped ({len(missing)} missing)")
        print(f"duplicates after restarts: {dups} (allowed: commits in flight at a kill are lost)")

        c = Consumer({"bootstrap.servers": bs, "group.id": group})
        committed = c.committed([TopicPartition(topic, i) for i in range(PARTITIONS)], timeout=15)
        ends = [c.get_watermark_offsets(TopicPartition(topic, i), timeout=15)[1] for i in range(PARTITIONS)]
        c.close()
        got = [tp.offset for tp in committed]
        check(got == ends, f"committed offsets {got} equal end offsets {ends}")
    finally:
        try:
            pg.stop(signal.SIGTERM)
        except Exception:
            pg.proc.kill()
        print(f"groups-restart: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
