"""Real-client load and the checks on what it saw (confluent-kafka / librdkafka).

- `Ledger`: every record produced (unique value) and every acknowledgement
  (partition, offset, value) from the delivery reports; failed deliveries and fatal
  producer errors.
- `ProducerThread`: an idempotent acks=all producer bootstrapped to one agent, producing
  keyed records (optionally paced to a rate) into a Ledger.
- `GroupRun` / `Member`: consumer-group members (each bootstrapped to its own agent, with its
  own client.id) that record every record they consume together with the assignment it came
  from, and every successful synchronous commit.
- `read_all`: the whole topic read back with assign() (no group): the ground truth.
- `compare`, `order_and_resume`: the checks.

Client threads never start or stop servers (see cluster.py: parent-death signals).
"""

import logging
import threading
import time
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

_LOGGER = None
# Clients of threads stopped by an abort: kept referenced so that their (possibly slow,
# a dead agent away) destruction never runs; the process exits with os._exit.
_ABANDONED = []


def client_logger(path=None):
    """One logger for every client: librdkafka's complaints about dead agents go to
    clients.log, not to the test's output."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = logging.getLogger("shoal-cluster-clients")
        _LOGGER.propagate = False
        _LOGGER.setLevel(logging.INFO)
        handler = logging.FileHandler(path) if path else logging.NullHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        _LOGGER.addHandler(handler)
    return _LOGGER


def base_conf(bootstrap, client_id):
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "logger": client_logger(),
        # Reconnect quickly to restarted agents, fail over quickly from dead ones.
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
    }


# ------------------------------------------------------------------ admin and metadata

def admin(bootstrap, client_id="cluster-admin"):
    return AdminClient(base_conf(bootstrap, client_id))


def create_topic(bootstrap, topic, partitions, timeout=30):
    a = admin(bootstrap)  # keep the client alive until the answer is in
    fut = a.create_topics([NewTopic(topic, partitions, 1)],
                          request_timeout=timeout, operation_timeout=timeout)
    fut[topic].result(timeout)


def metadata(bootstrap, client_id="cluster-meta", topic=None, timeout=10):
    return admin(bootstrap, client_id).list_topics(topic=topic, timeout=timeout)


def broker_addresses(md):
    return sorted(f"{b.host}:{b.port}" for b in md.brokers.values())


def leader_addresses(md, topic):
    """{partition: 'host:port' of its leader (or None)}."""
    t = md.topics.get(topic)
    if t is None:
        return {}
    out = {}
    for p, pm in t.partitions.items():
        b = md.brokers.get(pm.leader)
        out[p] = f"{b.host}:{b.port}" if b else None
    return out


def wait_topic(bootstraps, topic, partitions, timeout=30):
    """Until every bootstrap's Metadata shows `topic` with all partitions led by a listed
    broker. Returns None on success, else the last problem seen."""
    deadline = time.time() + timeout
    problem = "not tried"
    while time.time() < deadline:
        problem = None
        for bs in bootstraps:
            try:
                md = metadata(bs, topic=topic, timeout=5)
            except KafkaException as exc:
                problem = f"{bs}: {exc}"
                break
            t = md.topics.get(topic)
            if t is None or t.error is not None or len(t.partitions) != partitions:
                problem = f"{bs}: topic {topic}: {t.error if t else 'missing'}, " \
                          f"{len(t.partitions) if t else 0} partitions"
                break
            lead = leader_addresses(md, topic)
            if any(v is None for v in lead.values()):
                problem = f"{bs}: partitions without a listed leader: {lead}"
                break
        if problem is None:
            return None
        time.sleep(0.3)
    return problem


def wait_brokers(bootstrap, want, client_id="cluster-meta", timeout=30):
    """Until Metadata from `bootstrap` lists exactly the addresses `want`. Returns
    (ok, seconds, last list seen)."""
    want = sorted(want)
    t0 = time.time()
    seen = None
    while time.time() - t0 < timeout:
        try:
            seen = broker_addresses(metadata(bootstrap, client_id, timeout=5))
            if seen == want:
                return True, time.time() - t0, seen
        except KafkaException as exc:
            seen = f"error: {exc}"
        time.sleep(0.3)
    return False, time.time() - t0, seen


def group_coordinator(bootstrap, group):
    """'host:port' of the group's coordinator per DescribeGroups, or None."""
    try:
        a = admin(bootstrap)
        fut = a.describe_consumer_groups([group], request_timeout=10)[group]
        d = fut.result(15)
        return f"{d.coordinator.host}:{d.coordinator.port}" if d.coordinator else None
    except Exception:
        return None


def committed_and_ends(bootstrap, group, topic, partitions):
    c = Consumer(dict(base_conf(bootstrap, "cluster-offsets"), **{"group.id": group,
                                                                  "enable.auto.commit": False}))
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=15)}
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
                for p in range(partitions)}
        return committed, ends
    finally:
        c.close()


# ------------------------------------------------------------------ producing

class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.produced = {}  # value -> (producer, seq)
        self.acked = {}  # (partition, offset) -> value
        self.acked_at = {}  # value -> (partition, offset)
        self.double_acks = []  # (p, o, first value, second value) or (value, first pos, second pos)
        self.failed = {}  # value -> error string
        self.fatal = []  # fatal client errors
        self.order = defaultdict(list)  # (producer, partition) -> [(seq, offset)]

    def count(self):
        with self.lock:
            return len(self.acked)

    def ack(self, producer, seq, p, o, value):
        with self.lock:
            if (p, o) in self.acked:
                self.double_acks.append(((p, o), self.acked[(p, o)][:40], value[:40]))
            if value in self.acked_at:
                self.double_acks.append((value[:40], self.acked_at[value], (p, o)))
            self.acked[(p, o)] = value
            self.acked_at[value] = (p, o)
            self.order[(producer, p)].append((seq, o))

    def order_violations(self):
        """Per producer and partition, offsets must grow with the produce order."""
        bad = []
        with self.lock:
            for (prod, p), pairs in self.order.items():
                pairs = sorted(pairs)
                for (s1, o1), (s2, o2) in zip(pairs, pairs[1:]):
                    if o2 <= o1:
                        bad.append(f"{prod} p{p}: seq {s1}@{o1} then seq {s2}@{o2}")
        return bad


class ProducerThread(threading.Thread):
    def __init__(self, name, bootstrap, topic, count, ledger, abort, rate=None, tag="",
                 keys=500, extra_conf=None, client_id=None, pad=0):
        super().__init__(name=name, daemon=True)
        self.bootstrap, self.topic, self.count = bootstrap, topic, count
        self.pad = pad  # extra bytes per value (values are ~30-230 bytes without)
        self.ledger, self.abort, self.rate, self.tag, self.keys = ledger, abort, rate, tag, keys
        self.client_id = client_id or name
        self.conf = dict(base_conf(bootstrap, self.client_id), **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # Store outages and lease expiries (~10 s) are waited out, not reported.
            "message.timeout.ms": 150000,
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 1000,
            "error_cb": self._on_error,
        })
        self.conf.update(extra_conf or {})
        self.sent = 0
        self.undelivered = None
        self.exception = None
        self.finished_at = None

    def _on_error(self, err):
        if err.fatal():
            self.ledger.fatal.append(f"{self.name}: {err}")

    def run(self):
        try:
            self._run()
        except Exception as exc:  # reported by the test
            self.exception = exc

    def _run(self):
        p = Producer(self.conf)
        t0 = time.time()
        for seq in range(self.count):
            if self.abort.is_set():
                break
            value = f"{self.tag}/{self.name}/{seq}/" + "v" * (self.pad + (seq * 37) % 200)
            key = f"key-{(seq * 7919) % self.keys}"
            with self.ledger.lock:
                self.ledger.produced[value] = (self.name, seq)

            def report(err, msg, seq=seq, value=value):
                if err is not None:
                    with self.ledger.lock:
                        self.ledger.failed[value] = str(err)
                else:
                    self.ledger.ack(self.name, seq, msg.partition(), msg.offset(), value)

            while True:
                try:
                    p.produce(self.topic, key=key, value=value, on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.05)
                    if self.abort.is_set():
                        _ABANDONED.append(p)
                        return
            self.sent += 1
            p.poll(0)
            if self.rate:
                # poll() returns early when it serves a report: loop until it is time.
                while not self.abort.is_set():
                    ahead = t0 + (seq + 1) / self.rate - time.time()
                    if ahead <= 0:
                        break
                    p.poll(ahead)
        # Wait for the last acknowledgements in slices, so an abort is noticed.
        deadline = time.time() + 170
        left = len(p)
        while left and time.time() < deadline and not self.abort.is_set():
            left = p.flush(1.0)
        self.undelivered = left
        self.finished_at = time.time()
        if self.abort.is_set():
            _ABANDONED.append(p)


# ------------------------------------------------------------------ consuming

class GroupRun:
    """What a consumer group's members consumed and committed."""

    def __init__(self, group, topic, members_bootstraps, abort, name_prefix="member",
                 commit_interval=0.5, client_ids=None):
        self.group, self.topic = group, topic
        self.abort = abort
        self.lock = threading.Lock()
        self.stop_consuming = threading.Event()
        self.consumed = []  # (member, run, partition, offset, value)
        self.seen = {}  # (partition, offset) -> value (first seen)
        self.times_seen = defaultdict(int)
        self.inconsistent = []  # same (p, o) consumed with different values
        self.runs = {}  # run id -> (member, partition, assigned at monotonic)
        self.commits = defaultdict(list)  # partition -> [(done at monotonic, offset)]
        self.commit_errors = 0
        self.commit_error_kinds = {}
        self.errors = []
        self.rebalances = 0
        n = len(members_bootstraps)
        self.barrier = threading.Barrier(n, timeout=60)
        ids = client_ids or [f"{name_prefix}{i}" for i in range(n)]
        self.members = [Member(self, ids[i], bs, commit_interval)
                        for i, bs in enumerate(members_bootstraps)]

    def start(self):
        for m in self.members:
            m.start()

    def new_run(self, member, partition):
        with self.lock:
            run = len(self.runs)
            self.runs[run] = (member, partition, time.monotonic())
            return run

    def record(self, member, run, p, o, value):
        with self.lock:
            self.consumed.append((member, run, p, o, value))
            key = (p, o)
            if key in self.seen:
                if self.seen[key] != value:
                    self.inconsistent.append((key, self.seen[key][:40], value[:40]))
            else:
                self.seen[key] = value
            self.times_seen[key] += 1

    def committed(self, p, offset):
        with self.lock:
            self.commits[p].append((time.monotonic(), offset))

    def missing(self, acked):
        with self.lock:
            return [k for k in acked if k not in self.seen]

    def wait_consumed(self, ledger, timeout, producers_done):
        """Until every acknowledged record was consumed by some member (and
        `producers_done()`). Returns the number still missing."""
        deadline = time.time() + timeout
        while time.time() < deadline and not self.abort.is_set():
            with ledger.lock:
                acked = list(ledger.acked)
            left = len(self.missing(acked))
            if left == 0 and producers_done():
                return 0
            time.sleep(0.3)
        with ledger.lock:
            acked = list(ledger.acked)
        return len(self.missing(acked))

    def stop(self, timeout=60):
        self.stop_consuming.set()
        for m in self.members:
            m.join(timeout)
        return [m.name for m in self.members if m.is_alive()]

    def dump(self, path):
        """The group's history as JSON (for a look after a failure): each assignment run
        with the offsets it consumed, each completed commit, each error."""
        import json
        with self.lock:
            t0 = min([r[2] for r in self.runs.values()] or [0])
            offs = defaultdict(list)
            for member, run, p, o, _ in self.consumed:
                offs[run].append(o)
            runs = [{"run": run, "member": m, "partition": p, "assigned_s": round(t - t0, 3),
                     "first": offs[run][0] if offs[run] else None,
                     "last": offs[run][-1] if offs[run] else None, "count": len(offs[run])}
                    for run, (m, p, t) in sorted(self.runs.items())]
            commits = {p: [(round(t - t0, 3), o) for t, o in v] for p, v in self.commits.items()}
            out = {"runs": runs, "commits": commits, "errors": self.errors[:200],
                   "commit_errors": self.commit_error_kinds}
        with open(path, "w") as f:
            json.dump(out, f, indent=1)

    def redelivered(self):
        with self.lock:
            return sum(v - 1 for v in self.times_seen.values())

    def order_and_resume(self):
        """Within one assignment of a partition to a member, offsets are consecutive
        (strictly increasing, no gaps: the log has no control records here); and a
        member newly assigned a partition starts at or after every commit of that
        partition that had completed before the assignment (resumes from committed
        offsets, not from the beginning). Returns (order problems, resume problems,
        number of assignment runs)."""
        with self.lock:
            by_run = defaultdict(list)
            for member, run, p, o, _ in self.consumed:
                by_run[run].append(o)
            order, resume = [], []
            for run, offs in by_run.items():
                member, p, _ = self.runs[run]
                for a, b in zip(offs, offs[1:]):
                    if b != a + 1:
                        order.append(f"{member} p{p} run {run}: offset {a} then {b}")
                        break
            for run, (member, p, assigned) in self.runs.items():
                offs = by_run.get(run)
                if not offs:
                    continue
                before = [off for done, off in self.commits.get(p, []) if done < assigned]
                if before and offs[0] < max(before):
                    resume.append(f"{member} p{p} run {run}: started at {offs[0]}, "
                                  f"committed {max(before)} before the assignment")
            return order, resume, len(by_run)


class Member(threading.Thread):
    def __init__(self, group_run, client_id, bootstrap, commit_interval):
        super().__init__(name=client_id, daemon=True)
        self.g = group_run
        self.bootstrap = bootstrap
        self.commit_interval = commit_interval
        self.run_of = {}
        self.exception = None
        self.conf = dict(base_conf(bootstrap, client_id), **{
            "group.id": group_run.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "fetch.wait.max.ms": 200,
            "error_cb": self._on_error,
        })

    def _on_error(self, err):
        if err.fatal():
            self.g.errors.append(f"{self.name} fatal: {err}")

    def run(self):
        try:
            self._run()
        except Exception as exc:
            self.exception = exc

    def _on_assign(self, _c, parts):
        self.g.rebalances += 1
        for tp in parts:
            self.run_of[tp.partition] = self.g.new_run(self.name, tp.partition)

    def _on_revoke(self, c, parts):
        # As a careful application does: commit what was consumed before giving the
        # partitions up (Kafka accepts it while the group prepares the rebalance).
        if not self.g.abort.is_set():
            self.commit(c)
        self._on_lost(c, parts)

    def _on_lost(self, _c, parts):
        for tp in parts:
            self.run_of.pop(tp.partition, None)

    def commit(self, c):
        try:
            res = c.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                self.g.commit_errors += 1
                name = exc.args[0].name()
                self.g.commit_error_kinds[name] = self.g.commit_error_kinds.get(name, 0) + 1
            return False
        for tp in res or []:
            if tp.error is None and tp.offset >= 0:
                self.g.committed(tp.partition, tp.offset)
        return True

    def _run(self):
        g = self.g
        c = Consumer(self.conf)
        c.subscribe([g.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                    on_lost=self._on_lost)
        last_commit = time.monotonic()
        while not g.stop_consuming.is_set() and not g.abort.is_set():
            m = c.poll(0.2)
            if m is not None:
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        g.errors.append(f"{self.name}: {m.error()}")
                else:
                    run = self.run_of.get(m.partition())
                    if run is None:  # not expected: a record outside any assignment
                        run = self.run_of[m.partition()] = g.new_run(self.name, m.partition())
                    g.record(self.name, run, m.partition(), m.offset(), m.value().decode())
            if time.monotonic() - last_commit >= self.commit_interval:
                self.commit(c)
                last_commit = time.monotonic()
        if not g.abort.is_set():
            # Every member commits its last positions before any leaves (a leave
            # rebalances the group and the others' partitions move).
            for _ in range(5):
                c.poll(0)
                if self.commit(c):
                    break
                time.sleep(0.3)
            try:
                g.barrier.wait()
            except threading.BrokenBarrierError:
                pass
        if g.abort.is_set():
            _ABANDONED.append(c)  # close() could wait long on a dead coordinator
        else:
            c.close()


# ------------------------------------------------------------------ reading back

def wake_probe(read_bootstrap, write_bootstrap, topic, partitions, timeout=30):
    """A consumer (through `read_bootstrap`) waits at the end of every partition in long
    polls of 10 s; then one record per partition is produced through `write_bootstrap`.
    Returns how many of them the consumer got within `timeout`."""
    c = Consumer({**base_conf(read_bootstrap, "cluster-wake-probe"), **{
        "group.id": "cluster-wake-probe-unused",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 10000,
    }})
    try:
        c.assign([TopicPartition(topic, p, OFFSET_END) for p in range(partitions)])
        settle = time.time() + 3
        while time.time() < settle:
            c.poll(0.2)
        p = Producer({**base_conf(write_bootstrap, "cluster-wake-producer"), "acks": "all"})
        for part in range(partitions):
            p.produce(topic, value=f"wake-{part}".encode(), partition=part)
        if p.flush(30) != 0:
            return 0
        got = set()
        deadline = time.time() + timeout
        while len(got) < partitions and time.time() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None and m.value().startswith(b"wake-"):
                got.add(m.partition())
        return len(got)
    finally:
        c.close()


def read_all(bootstrap, topic, partitions, timeout=90, client_id="cluster-read-all",
             extra_conf=None, known_highs=None):
    """Every record of `topic` from offset 0 to the high watermark (assign(), no group).
    Returns ({(p, o): value}, {p: high watermark}, problems). With `known_highs`
    ({p: high watermark}) the watermarks are not asked for: every partition is fetched
    at once, also while some partition's leader is a dead agent still listed."""
    c = Consumer({**base_conf(bootstrap, client_id), **{
        "group.id": "cluster-read-all-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    }, **(extra_conf or {})})
    problems = []
    got = {}
    try:
        highs = {}
        lows = {}
        deadline = time.time() + timeout
        for p in range(partitions):
            if known_highs is not None:
                lows[p], highs[p] = 0, known_highs[p]
                continue
            # Asked of the partition's leader: retried while that is a dead agent still
            # listed (until its lease expires and Metadata moves the partition).
            while True:
                try:
                    lows[p], highs[p] = c.get_watermark_offsets(TopicPartition(topic, p),
                                                                timeout=10)
                    break
                except KafkaException:
                    if time.time() > deadline:
                        raise
                    time.sleep(0.5)
            if lows[p] != 0:
                problems.append(f"p{p} log start offset {lows[p]}, expected 0")
        todo = {p for p in range(partitions) if highs[p] > 0}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(todo)])
        deadline = max(deadline, time.time() + timeout / 2)
        while todo and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if m.offset() >= highs[m.partition()]:
                        todo.discard(m.partition())
                else:
                    problems.append(f"read error: {m.error()}")
                    if len(problems) > 20:
                        break
                continue
            got[(m.partition(), m.offset())] = m.value().decode()
            if m.offset() + 1 >= highs[m.partition()]:
                todo.discard(m.partition())
        if todo:
            problems.append(f"partitions {sorted(todo)} not read to their high watermark "
                            f"within {timeout}s")
        return got, highs, problems
    finally:
        c.close()


def compare(records, ledger):
    """`records` ({(p, o): value}) against the ledger. Returns a dict of problem lists:
    missing (acknowledged, not there), wrong (there with another value), duplicate (a
    value acknowledged elsewhere appears again), unknown (never produced); and
    'unacked' (produced, delivery failed, yet present: reported, not a failure)."""
    out = {"missing": [], "wrong": [], "duplicate": [], "unknown": [], "unacked": []}
    with ledger.lock:
        for key, value in ledger.acked.items():
            got = records.get(key)
            if got is None:
                out["missing"].append(key)
            elif got != value:
                out["wrong"].append((key, value[:40], got[:40]))
        for key, value in records.items():
            if key in ledger.acked:
                continue
            if value in ledger.acked_at:
                out["duplicate"].append((key, value[:40], ledger.acked_at[value]))
            elif value in ledger.produced:
                out["unacked"].append(key)
            else:
                out["unknown"].append((key, value[:40]))
    return out


def sample(items, n=3):
    items = list(items)
    return f"{len(items)}" + (f", e.g. {items[:n]}" if items else "")
