"""Retries after lost acknowledgements produce no duplicates (see README.md).

  harness.py shoal PATH_TO_SHOAL [JAVA_CLASSPATH]
  harness.py kafka [JAVA_CLASSPATH]

The server listens on a private port and advertises the proxy's port, so every client
connection goes through proxy.py, which drops the response to every 7th Produce request
(after the server handled it) and closes the connection. Producers: confluent-kafka
(librdkafka) and the Java client 4.3.1, each idempotent (must give every record exactly
once, in order) and non-idempotent with retries (duplicates expected; counted).

Last line: `lost-ack: passed` or `lost-ack: failed: REASON`; exit status 0 / 1.
"""

import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# The server start/kill/restart helpers are shared with the txn-restart test.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "txn-restart"))
import servers  # noqa: E402
from proxy import Proxy  # noqa: E402

NAME = "lost-ack"
PARTITIONS = int(os.environ.get("LOST_ACK_PARTITIONS", "3"))
RECORDS = int(os.environ.get("LOST_ACK_RECORDS", "5000"))
DROP_EVERY = int(os.environ.get("LOST_ACK_DROP_EVERY", "7"))
CLIENTS = os.environ.get("LOST_ACK_CLIENTS", "confluent,java").split(",")
TOTAL_SECONDS = int(os.environ.get("LOST_ACK_SECONDS", "240"))
BURST, BURST_PAUSE = 25, 0.010  # produce in bursts of 25 records, 10 ms apart


Failed = servers.Failed


def log(*parts):
    print(*parts, flush=True)


def main():
    mode = sys.argv[1]
    args = sys.argv[2:]
    workdir = tempfile.mkdtemp(prefix="shoal-lost-ack.")
    real_port, proxy_port = servers.free_port(), servers.free_port()
    while proxy_port == real_port:
        proxy_port = servers.free_port()
    advertise = f"127.0.0.1:{proxy_port}"
    if mode == "kafka":
        server = servers.KafkaServer(workdir, real_port, advertise=advertise,
                                     extra_props=["offsets.topic.num.partitions=4"],
                                     max_seconds=TOTAL_SECONDS + 60)
        java_cp = args[0] if args else ""
    else:
        binary = os.path.abspath(args[0])
        java_cp = args[1] if len(args) > 1 else ""
        if not os.access(binary, os.X_OK):
            log(f"{NAME}: failed: no executable Shoal binary at {binary}")
            return 1
        server = servers.ShoalServer(binary, workdir, real_port, advertise=advertise)
    proxy = Proxy(proxy_port, real_port, drop_every=DROP_EVERY)

    started = time.time()
    result = None
    try:
        proxy.start()
        log(f"{NAME}: {server.kind} listens on 127.0.0.1:{real_port} and advertises the proxy "
            f"127.0.0.1:{proxy_port}; every {DROP_EVERY}th Produce response is lost")
        server.start()
        log(f"{NAME}: server up after {time.time() - started:.1f}s")
        run_all(server, proxy, advertise, java_cp, mode)
    except Failed as exc:
        result = str(exc)
    except Exception as exc:  # noqa: BLE001 - any crash of the harness is a failure
        result = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001
            log(f"stopping the server: {exc}")
        proxy.stop()
        if result is not None:
            log(f"--- last lines of the server log ({server.log_path}):")
            log(server.log_tail(30))
        if os.environ.get("LOST_ACK_KEEP") == "1":
            log(f"keeping {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    log(f"{NAME}: total {time.time() - started:.1f}s")
    if result is None:
        log(f"{NAME}: passed")
        return 0
    log(f"{NAME}: failed: {result}")
    return 1


def run_all(server, proxy, bs, java_cp, mode):
    runs = []
    for idempotent in (True, False):
        for client in CLIENTS:
            if client not in ("confluent", "java"):
                raise Failed(f"unknown client {client!r} in LOST_ACK_CLIENTS")
            if client == "java" and not java_cp:
                raise Failed("no Java classpath (the Java build failed?)")
            runs.append((client, idempotent))

    admin = AdminClient({"bootstrap.servers": bs})
    failures = []
    summary = []
    for client, idempotent in runs:
        kind = "idempotent" if idempotent else "plain"
        topic = f"lost-ack-{client}-{kind}-{uuid.uuid4().hex[:6]}"
        for fut in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
            fut.result(30)
        proxy.reset_stats()
        proxy.dropping = True
        t0 = time.time()
        if client == "confluent":
            delivered, failed, first_error = produce_confluent(bs, topic, idempotent)
        else:
            delivered, failed, first_error = produce_java(java_cp, bs, topic, idempotent)
        took = time.time() - t0
        proxy.dropping = False
        st = proxy.stats()

        parts = read_all(bs, topic)
        counts = collections.Counter()
        inversions = 0
        exact = True
        for p in range(PARTITIONS):
            seqs = [int(v) for v in parts.get(p, [])]
            counts.update(seqs)
            inversions += sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
            if seqs != list(range(p, RECORDS, PARTITIONS)):
                exact = False
        dups = sum(c - 1 for c in counts.values() if c > 1)
        missing = sum(1 for i in range(RECORDS) if i not in counts)
        total = sum(counts.values())
        name = f"{client} {kind}"
        log(f"[{name}] produced {RECORDS} in {took:.1f}s: delivered={delivered} failed={failed}"
            f"{' first_error=' + first_error if failed else ''}; proxy: "
            f"{st['produce_requests']} Produce requests (versions {st['api_versions'].get(0)}), "
            f"{st['dropped']} responses dropped, {st['connections']} connections, "
            f"{st['unacked_batches']} idempotent batches unacknowledged and {st['resent_batches']} "
            f"re-sends of them, {st['unparsed']} unparsed; log: {total} "
            f"records, {missing} missing, {dups} duplicates, {inversions} out-of-order steps")
        summary.append(f"{name}: {st['dropped']} acks lost, {dups} duplicates")

        def expect(ok, what):
            log(f"{'ok' if ok else 'FAILED'}: [{name}] {what}")
            if not ok:
                failures.append(f"[{name}] {what}")

        expect(st["dropped"] > 0, f"the proxy lost {st['dropped']} Produce acknowledgements "
                                  f"(> 0, so retries happened)")
        if idempotent:
            expect(st["resent_batches"] > 0,
                   f"the producer re-sent {st['resent_batches']} batches (same producer id, "
                   f"epoch and sequence) whose acknowledgement was lost")
            expect(failed == 0 and delivered == RECORDS,
                   f"the producer got an acknowledgement for all {RECORDS} records "
                   f"({delivered} delivered, {failed} failed)")
            expect(missing == 0, f"no record lost ({missing} missing)")
            expect(dups == 0, f"no record duplicated ({dups} duplicates)")
            expect(exact, "every partition holds its records exactly once, in production order")
        elif mode == "kafka":
            expect(dups > 0, f"without idempotence the lost acknowledgements cause duplicates "
                             f"({dups}): the proxy works")
        else:
            log(f"[{name}] without idempotence: {dups} duplicates, {missing} missing "
                f"(printed, not asserted; 0 duplicates would mean the lost acks did not "
                f"cause re-sends of stored data)")
    log("summary: " + "; ".join(summary))
    if failures:
        raise Failed("; ".join(failures))


def produce_confluent(bs, topic, idempotent):
    conf = {"bootstrap.servers": bs, "linger.ms": 5,
            "max.in.flight.requests.per.connection": 5,
            "reconnect.backoff.ms": 50, "retry.backoff.ms": 50,
            "request.timeout.ms": 10000, "message.timeout.ms": 90000,
            "log.connection.close": False,  # the proxy closes connections on purpose
            "client.id": f"lost-ack-confluent-{'idempotent' if idempotent else 'plain'}"}
    if idempotent:
        conf["enable.idempotence"] = True
    else:
        conf.update({"enable.idempotence": False, "acks": "all", "retries": 2147483647})
    stats = {"delivered": 0, "failed": 0, "first_error": "none"}

    def on_delivery(err, _msg):
        if err is None:
            stats["delivered"] += 1
        else:
            stats["failed"] += 1
            if stats["first_error"] == "none":
                stats["first_error"] = str(err)

    p = Producer(conf)
    for i in range(RECORDS):
        n = str(i).encode()
        while True:
            try:
                p.produce(topic, key=n, value=n, partition=i % PARTITIONS, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        if i % BURST == BURST - 1:
            p.poll(0)
            time.sleep(BURST_PAUSE)
    left = p.flush(120)
    if left:
        stats["failed"] += left
        stats["first_error"] = f"{left} still queued after flush(120)"
    return stats["delivered"], stats["failed"], stats["first_error"]


def produce_java(java_cp, bs, topic, idempotent):
    cmd = ["java", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel="
           + os.environ.get("LOST_ACK_JAVA_LOG_LEVEL", "error"),
           "-cp", java_cp, "dev.shoal.compat.lostack.LostAckProducer", bs, topic,
           str(PARTITIONS), str(RECORDS), "idempotent" if idempotent else "plain"]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=150,
                             preexec_fn=servers.die_with_parent)
    except subprocess.TimeoutExpired:
        raise Failed("the Java producer did not finish within 150s")
    line = out.stdout.decode(errors="replace").strip().splitlines()
    line = line[-1] if line else ""
    if out.returncode != 0 or not line.startswith("delivered="):
        raise Failed(f"the Java producer failed (status {out.returncode}): {line!r}")
    fields = dict(kv.split("=", 1) for kv in line.split(" ", 3))
    return int(fields["delivered"]), int(fields["failed"]), fields.get("first_error", "")


def read_all(bs, topic, timeout=60):
    """Values of every record of `topic`, per partition, in offset order."""
    c = Consumer({"bootstrap.servers": bs, "group.id": f"lost-ack-verify-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "earliest"})
    parts = {}
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        at_eof = set()
        deadline = time.time() + timeout
        while len(at_eof) < PARTITIONS:
            if time.time() > deadline:
                raise Failed(f"reading {topic} back did not reach the end of every partition "
                             f"within {timeout}s")
            for m in c.consume(500, 0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    raise Failed(f"reading {topic}: {err}")
                at_eof.discard(m.partition())
                parts.setdefault(m.partition(), []).append(m.value().decode())
    finally:
        c.close()
    return parts


if __name__ == "__main__":
    servers.run(main, TOTAL_SECONDS)
