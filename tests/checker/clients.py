"""The checker's clients, each a thread writing to a History: confluent-kafka (librdkafka),
and one transactional producer with the Java client (Kafka 4.x).

- `Producer`: `idem` (enable.idempotence, acks=all) or `plain` (no idempotence, acks=all,
  retries on: duplicates are allowed there and only counted), paced to a rate.
- `TxnProducer`: a transactional producer that runs transactions of a few records over the
  partitions of the txn topic and ends each by commit or, for about a third, abort; the
  intent and what the client was told are both recorded. A fatal error (fenced, ...) makes
  it start a new producer with the same transactional.id.
- `JavaTxnProducer`: the same transactions with the Java client's KafkaProducer
  (java/TxnWorkload.java, run by the source launcher in a child process that dies with the
  thread that started it), recorded from its JSON lines as they arrive.
- `Member`: a consumer-group member, `manual` (a synchronous commit every 0.5 s) or `auto`
  (enable.auto.commit, commits seen through on_commit), in `read_uncommitted` or
  `read_committed`. Never seeks: a committed offset of its group must never go back.
- `OffsetWatcher`: reads every group's committed offsets (OffsetFetch) once a second.

Client threads never start or stop server processes (cluster.py: parent-death signals).
"""

import collections
import json
import logging
import os
import random
import re
import subprocess
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import Producer as KProducer
from confluent_kafka import TopicPartition

from cluster import SETPRIV, die_with_parent
from workload import _ABANDONED, base_conf, client_logger

PAD = "x" * 64
JAVA_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "java", "TxnWorkload.java")


class ClientThread(threading.Thread):
    """A client thread: `_run` does the work; an exception it raises is kept in
    `exception` (the checker reports it as a harness problem) instead of vanishing."""

    exception = None

    def run(self):
        try:
            self._run()
        except Exception as exc:
            self.exception = exc


class Producer(ClientThread):
    def __init__(self, history, kind, name, bootstrap, topic, rate, stop):
        super().__init__(name=name, daemon=True)
        self.h, self.kind, self.topic, self.rate, self.stop = history, kind, topic, rate, stop
        self.conf = dict(base_conf(bootstrap, name), **{
            "acks": "all",
            "enable.idempotence": kind == "idem",
            "linger.ms": 5,
            # A fault lasts ~15 s and a lease ~10 s more: wait that out, then give up.
            "message.timeout.ms": 60000,
            "retry.backoff.ms": 100,
            "retry.backoff.max.ms": 1000,
            "error_cb": lambda err: history.error(f"{name}: {err.name()}")
            if err.fatal() else None,
        })
        # CHECKER_DEBUG=eos,msg,protocol (librdkafka debug contexts) logs what the
        # idempotent producers do with sequences and epochs to clients.log.
        debug = os.environ.get("CHECKER_DEBUG")
        if debug and kind == "idem":
            self.conf["debug"] = debug
            self.conf["logger"].setLevel(logging.DEBUG)

    def _run(self):
        p = KProducer(self.conf)
        t0 = time.time()
        seq = 0
        while not self.stop.is_set():
            value = f"{self.kind}/{self.name}/{seq}/{PAD[:seq % 64]}"
            self.h.sent(value, self.kind, self.name, self.topic)

            def report(err, msg, value=value):
                if err is None:
                    self.h.acked(value, msg.partition(), msg.offset())
                else:
                    self.h.failed(value, err.name())

            while True:
                try:
                    p.produce(self.topic, key=f"k{seq % 97}", value=value, on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.05)
            seq += 1
            while not self.stop.is_set():
                ahead = t0 + seq / self.rate - time.time()
                if ahead <= 0:
                    break
                p.poll(min(ahead, 0.2))
            p.poll(0)
        deadline = time.time() + 70
        while len(p) and time.time() < deadline:
            p.flush(1.0)
        if len(p):
            _ABANDONED.append(p)


class TxnProducer(ClientThread):
    def __init__(self, history, name, bootstrap, topic, partitions, stop, seed):
        super().__init__(name=name, daemon=True)
        self.h, self.topic, self.partitions, self.stop = history, topic, partitions, stop
        self.rng = random.Random(seed)
        self.conf = dict(base_conf(bootstrap, name), **{
            "transactional.id": f"checker-{name}",
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "transaction.timeout.ms": 60000,
        })
        self.instances = 0

    def _new(self):
        while not self.stop.is_set():
            p = KProducer(self.conf)
            self.instances += 1
            try:
                p.init_transactions(30)
                return p
            except KafkaException as exc:
                self.h.error(f"{self.name} init_transactions: {exc.args[0].name()}")
                _ABANDONED.append(p)
                time.sleep(1)
        return None

    def _run(self):
        p = self._new()
        n = 0
        while p is not None and not self.stop.is_set():
            key = (self.name, n)
            intent = "abort" if self.rng.random() < 0.3 else "commit"
            self.h.txn_begin(key, intent)
            fatal = False
            try:
                p.begin_transaction()
                for i in range(self.rng.randint(2, 6)):
                    value = f"txn/{self.name}/{n}/{i}/{PAD[:(n + i) % 64]}"
                    self.h.sent(value, "txn", self.name, self.topic, txn=n)
                    self.h.txn_value(key, value)

                    def report(err, msg, value=value):
                        if err is None:
                            self.h.acked(value, msg.partition(), msg.offset())
                        else:
                            self.h.failed(value, err.name())

                    p.produce(self.topic, value=value, partition=self.rng.randrange(self.partitions),
                              on_delivery=report)
                    p.poll(0)
                self.h.txn_ending(key)
                if intent == "commit":
                    self._end(p, key, p.commit_transaction, "committed")
                else:
                    self._end(p, key, p.abort_transaction, "aborted")
            except KafkaException as exc:
                err = exc.args[0]
                if self.h.txns[key]["end_start"] is None:
                    self.h.txn_ending(key)
                fatal = err.fatal() or not self._try_abort(p, key, err)
                if fatal:
                    self.h.txn_end(key, "unknown", err.name())
            n += 1
            if fatal:
                _ABANDONED.append(p)
                p = self._new()
            time.sleep(0.1)
        if p is not None:
            _ABANDONED.append(p)

    def _end(self, p, key, call, outcome):
        """commit_transaction / abort_transaction, retried while retriable."""
        for _ in range(5):
            try:
                call(30)
                self.h.txn_end(key, outcome)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.retriable() and not err.txn_requires_abort():
                    continue
                raise
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "ending the transaction kept timing out"))

    def _try_abort(self, p, key, err):
        """After an abortable error: abort. Returns whether the abort was confirmed."""
        if not err.txn_requires_abort():
            return False
        try:
            p.abort_transaction(30)
        except KafkaException:
            return False
        self.h.txn_end(key, "aborted", err.name())
        return True


def java_error(cls):
    """A Java exception's class as a short error name: ...ProducerFencedException ->
    PRODUCER_FENCED."""
    short = cls.rsplit(".", 1)[-1].removesuffix("Exception")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", short).upper()


class JavaTxnProducer(ClientThread):
    """TxnProducer's transactions with the Java client. The process is started here, in the
    constructor (the main thread), since compiling takes seconds; it waits for "start" (sent
    by run()) and finishes its transaction and exits on "stop" (sent once `stop` is set)."""

    def __init__(self, history, name, bootstrap, topic, partitions, stop, seed, libs):
        super().__init__(name=name, daemon=True)
        self.h, self.topic, self.stop = history, topic, stop
        cmd = ["java", "-cp", os.path.join(libs, "*"), JAVA_SOURCE, bootstrap,
               f"checker-{name}", topic, str(partitions), str(seed), name]
        if SETPRIV:
            cmd, pre = [SETPRIV, "--pdeathsig", "KILL", "--"] + cmd, None
        else:
            pre = die_with_parent
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=pre)
        self.stderr = collections.deque(maxlen=4)  # its last lines, for an unexpected exit
        self.stderr_reader = threading.Thread(target=self._log_stderr, name=f"{name}-stderr",
                                              daemon=True)
        self.stderr_reader.start()

    def _run(self):
        self._tell("start")
        threading.Thread(target=self._stop_when_told, name=f"{self.name}-stop", daemon=True).start()
        for line in self.proc.stdout:
            self._record(json.loads(line))
        status = self.proc.wait()
        self.stderr_reader.join(5)
        if status != 0 or not self.stop.is_set():
            raise RuntimeError(f"java exited (status {status}) before it was stopped: "
                               + " | ".join(self.stderr))

    def _record(self, e):
        h, event, key = self.h, e["event"], (self.name, e.get("txn"))
        error = java_error(e["error"]) if "error" in e else None
        if event == "begin":
            h.txn_begin(key, e["intent"])
        elif event == "sent":
            h.sent(e["value"], "txn", self.name, self.topic, txn=e["txn"])
            h.txn_value(key, e["value"])
        elif event == "acked":
            h.acked(e["value"], e["partition"], e["offset"])
        elif event == "failed":
            h.failed(e["value"], error)
        elif event == "ending":
            h.txn_ending(key)
        elif event == "end":
            h.txn_end(key, e["outcome"], error)
        elif event == "error":
            h.error(f"{self.name} {e['what']}: {error}")
        else:
            raise ValueError(f"unknown event {e!r}")
        if error:
            what = e.get("value") or e.get("what") or f"txn {e['txn']} {e['outcome']}"
            client_logger().info(f"{self.name}: {event} {what}: {e['error']}: {e['message']}")

    def _tell(self, line):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it has exited: _run says why

    def _stop_when_told(self):
        self.stop.wait()
        self._tell("stop")

    def _log_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            client_logger().info(f"{self.name}: {line.rstrip()}")


class Member(ClientThread):
    def __init__(self, history, name, bootstrap, group, topic, isolation, commits, stop):
        super().__init__(name=name, daemon=True)
        self.h, self.group, self.topic, self.stop = history, group, topic, stop
        self.isolation, self.commits = isolation, commits
        self.conf = dict(base_conf(bootstrap, name), **{
            "group.id": group,
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
            "enable.auto.commit": commits == "auto",
            "auto.commit.interval.ms": 1000,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "fetch.wait.max.ms": 200,
            "on_commit": self._on_commit,
            "error_cb": lambda err: history.error(f"{name}: {err.name()}")
            if err.fatal() else None,
        })
        self.run_of = {}

    def _on_commit(self, err, parts):
        if err is not None or self.commits != "auto":
            return
        for tp in parts:
            if tp.error is None and tp.offset >= 0:
                self.h.committed(self.group, self.name, tp.topic, tp.partition, tp.offset)

    def _on_assign(self, _c, parts):
        for tp in parts:
            self.run_of[tp.partition] = self.h.new_run(self.name, self.group, tp.topic,
                                                       tp.partition)

    def _on_revoke(self, c, parts):
        if self.commits == "manual":
            self._commit(c)
        self._on_lost(c, parts)

    def _on_lost(self, _c, parts):
        for tp in parts:
            self.run_of.pop(tp.partition, None)

    def _commit(self, c):
        try:
            res = c.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                self.h.error(f"commit: {exc.args[0].name()}")
            return
        for tp in res or []:
            if tp.error is None and tp.offset >= 0:
                self.h.committed(self.group, self.name, tp.topic, tp.partition, tp.offset)

    def _run(self):
        c = Consumer(self.conf)
        c.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                    on_lost=self._on_lost)
        last = time.monotonic()
        while not self.stop.is_set():
            m = c.poll(0.2)
            if m is not None:
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        self.h.error(f"consume: {m.error().name()}")
                else:
                    run = self.run_of.get(m.partition())
                    if run is None:
                        run = self.run_of[m.partition()] = self.h.new_run(
                            self.name, self.group, m.topic(), m.partition())
                    self.h.polled(self.name, self.group, self.isolation, run, m.topic(),
                                  m.partition(), m.offset(), m.value().decode())
            if self.commits == "manual" and time.monotonic() - last >= 0.5:
                self._commit(c)
                last = time.monotonic()
        _ABANDONED.append(c)  # close() may wait long on an unreachable coordinator


class OffsetWatcher(ClientThread):
    """Reads each group's committed offsets once a second; each answer is recorded."""

    def __init__(self, history, bootstraps, groups, stop):
        super().__init__(name="offset-watcher", daemon=True)
        self.h, self.bootstraps, self.groups, self.stop = history, bootstraps, groups, stop

    def _run(self):
        clients = {g: Consumer(dict(base_conf(self.bootstraps, f"watch-{g}"),
                                    **{"group.id": g, "enable.auto.commit": False}))
                   for g in self.groups}
        while not self.stop.wait(1.0):
            for g, (topic, partitions) in self.groups.items():
                try:
                    got = clients[g].committed([TopicPartition(topic, p)
                                                for p in range(partitions)], timeout=5)
                except KafkaException:
                    continue
                for tp in got:
                    if tp.error is None and tp.offset >= 0:
                        self.h.offset_seen(g, topic, tp.partition, tp.offset)
        _ABANDONED.extend(clients.values())
