"""KIP-848 consumer groups (group.protocol=consumer) with real clients: the Java 4.x
consumer and librdkafka, each as separate member processes (Member.java, member.py).

For each client: three members (one static) share a 6-partition topic while records keep
coming; one leaves (close), one is killed with SIGKILL (its partitions move after the
group session timeout), the static one closes and restarts under the same
group.instance.id, and a fourth joins. Checked: every acknowledged record is consumed,
the members cover every partition after each step, the group shows as a consumer group
in Kafka's tools, and at the end the committed offsets are the log end offsets.

Then the online upgrade: a classic group of a Java and a librdkafka member runs while
records keep coming; a Java and then a librdkafka group.protocol=consumer member join it
(the group becomes a consumer group whose classic members the coordinator assigns), then
both leave (it goes back to a classic group). The same checks hold at every step.

    python run.py BOOTSTRAP KAFKA4_LIBS
"""
import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Producer, TopicPartition, Consumer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
PARTITIONS = 6
bootstrap, libs = sys.argv[1], sys.argv[2]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


class MemberProc:
    def __init__(self, kind, group, topic, instance="-", protocol="consumer"):
        self.name = f"{kind}:{protocol}:{instance}"
        if kind == "java":
            cmd = ["java", "-cp", os.path.join(libs, "*"), os.path.join(HERE, "Member.java")]
        else:
            cmd = [sys.executable, os.path.join(HERE, "member.py")]
        self.p = subprocess.Popen(
            cmd + [bootstrap, group, topic, instance],
            env=dict(os.environ, GROUP_PROTOCOL=protocol),
            stdout=subprocess.PIPE,
            stderr=open(os.path.join(os.environ.get("LOGDIR", "."), f"{kind}-{instance}.err"), "a"),
            text=True,
        )
        self.assigned = set()
        self.values = set()
        self.closed = False
        LIVE.append(self)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "assigned":
                self.assigned = set() if parts[1] == "-" else {int(x) for x in parts[1].split(",")}
            elif parts[0] == "rec":
                self.values.add(parts[3])
            elif parts[0] == "closed":
                self.closed = True
        self.assigned = set()

    def term(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(60)

    def kill(self):
        self.p.kill()
        self.p.wait(10)


LIVE = []


def wait_for(cond, what, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            check(True, what)
            return True
        time.sleep(0.2)
    check(False, f"{what} (not within {timeout} s)")
    for m in LIVE:
        print(f"     {m.name} pid {m.p.pid} exit {m.p.poll()} owns {sorted(m.assigned)}", flush=True)
    return False


def covers(members):
    owned = [p for m in members for p in m.assigned]
    return sorted(owned) == list(range(PARTITIONS))


def scenario(kind):
    topic, group = f"cp-{kind}", f"cp-group-{kind}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    acked = set()
    lock = threading.Lock()

    def delivered(err, msg):
        if err is None:
            with lock:
                acked.add(msg.value().decode())

    n = 0

    def produce(count):
        nonlocal n
        for _ in range(count):
            producer.produce(topic, value=f"{kind}-{n}".encode(), partition=n % PARTITIONS, on_delivery=delivered)
            n += 1
        producer.flush(30)

    produce(600)
    stop = threading.Event()

    def keep_producing():
        while not stop.is_set():
            produce(20)
            time.sleep(0.2)

    a = MemberProc(kind, group, topic)
    b = MemberProc(kind, group, topic)
    c = MemberProc(kind, group, topic, f"{kind}-static")
    wait_for(lambda: covers([a, b, c]) and all(m.assigned for m in (a, b, c)),
             f"{kind}: three members share the six partitions")
    writer = threading.Thread(target=keep_producing, daemon=True)
    writer.start()
    a.term()
    check(a.closed, f"{kind}: a member closes cleanly")
    wait_for(lambda: covers([b, c]), f"{kind}: after a member leaves, the other two cover every partition")
    b.kill()
    wait_for(lambda: covers([c]), f"{kind}: after a member is killed, the static member takes its partitions")
    c.term()
    c2 = MemberProc(kind, group, topic, f"{kind}-static")
    wait_for(lambda: covers([c2]), f"{kind}: the static member restarts and gets every partition back")
    d = MemberProc(kind, group, topic)
    wait_for(lambda: covers([c2, d]) and d.assigned, f"{kind}: a new member joins and takes a share")
    stop.set()
    writer.join()
    producer.flush(30)
    consumed = lambda: set().union(a.values, b.values, c.values, c2.values, d.values)
    wait_for(lambda: acked <= consumed(), f"{kind}: every one of {len(acked)} acknowledged records is consumed")
    lost = acked - consumed()
    if lost:
        print(f"     missing, e.g. {sorted(lost)[:5]}", flush=True)
    describe = subprocess.run(
        ["java", "-cp", os.path.join(libs, "*"), "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
         "--bootstrap-server", bootstrap, "--describe", "--group", group, "--state"],
        capture_output=True, text=True, timeout=120)
    out = describe.stdout
    check("uniform" in out and "Stable" in out,
          f"{kind}: kafka-consumer-groups.sh --describe --state shows a Stable group with the uniform assignor")
    c2.term()
    d.term()
    check_committed_at_end(kind, group, topic)


def check_committed_at_end(label, group, topic):
    """Committed offsets are the log end offsets."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    committed = {tp.partition: tp.offset for tp in probe.committed(tps, timeout=30)}
    ends = {p: probe.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in range(PARTITIONS)}
    probe.close()
    check(committed == ends, f"{label}: committed offsets {committed} are the log end offsets {ends}")


def upgrade_scenario():
    """A running classic group of a Java and a librdkafka member is upgraded online when
    consumer-protocol members join it, and goes back to classic when they leave, while
    records keep coming; nothing is lost."""
    topic, group = "cp-upgrade", "cp-group-upgrade"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    acked = set()
    lock = threading.Lock()
    stop = threading.Event()

    def delivered(err, msg):
        if err is None:
            with lock:
                acked.add(msg.value().decode())

    def keep_producing():
        n = 0
        while not stop.is_set():
            for _ in range(20):
                producer.produce(topic, value=f"up-{n}".encode(), partition=n % PARTITIONS, on_delivery=delivered)
                n += 1
            producer.flush(30)
            time.sleep(0.2)

    writer = threading.Thread(target=keep_producing, daemon=True)
    writer.start()
    a = MemberProc("java", group, topic, protocol="classic")
    b = MemberProc("librdkafka", group, topic, protocol="classic")
    wait_for(lambda: covers([a, b]) and a.assigned and b.assigned,
             "upgrade: a classic group of a Java and a librdkafka member shares the partitions")
    c = MemberProc("java", group, topic, protocol="consumer")
    wait_for(lambda: covers([a, b, c]) and all(m.assigned for m in (a, b, c)),
             "upgrade: a Java group.protocol=consumer member joins the running classic group; all three share the partitions")
    d = MemberProc("librdkafka", group, topic, protocol="consumer")
    wait_for(lambda: covers([a, b, c, d]) and all(m.assigned for m in (a, b, c, d)),
             "upgrade: a librdkafka group.protocol=consumer member joins too; the four share the partitions")
    describe = subprocess.run(
        ["java", "-cp", os.path.join(libs, "*"), "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
         "--bootstrap-server", bootstrap, "--describe", "--group", group, "--members"],
        capture_output=True, text=True, timeout=120)
    rows = [l for l in describe.stdout.splitlines() if l.startswith(group)]
    check(len(rows) == 4, f"upgrade: kafka-consumer-groups.sh --describe --members lists the four members ({len(rows)} rows)")
    c.term()
    d.term()
    wait_for(lambda: covers([a, b]) and a.assigned and b.assigned,
             "downgrade: after the consumer-protocol members leave, the group is classic again and its two members cover every partition")
    stop.set()
    writer.join()
    producer.flush(30)
    consumed = lambda: set().union(a.values, b.values, c.values, d.values)
    wait_for(lambda: acked <= consumed(), f"upgrade: every one of {len(acked)} acknowledged records is consumed")
    a.term()
    b.term()
    check_committed_at_end("upgrade", group, topic)


for kind in sys.argv[3:] or ("java", "librdkafka", "upgrade"):
    if kind == "upgrade":
        upgrade_scenario()
    else:
        scenario(kind)
print(f"consumer protocol: {len(failures)} failed", flush=True)
sys.exit(1 if failures else 0)
