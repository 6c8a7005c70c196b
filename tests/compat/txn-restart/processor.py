"""Exactly-once consume-transform-produce processor (confluent-kafka / librdkafka).

Started (and killed with SIGKILL, and restarted) by harness.py. One process = one
incarnation of the processor with a fixed transactional.id; init_transactions() in a new
incarnation fences the previous one and aborts its open transaction.

Each transaction: consume a chunk of input records (read_committed, no auto commit),
produce one transformed record per input record to the SAME partition number of the
output topic, send the consumed offsets to the transaction, commit. Every 11th
transaction is aborted on purpose instead (after its offsets were sent), and the consumer
rewinds to the group's committed offsets: neither its records nor its offsets may count.

Output record: key = input key, value = "SEQ:INPUT_PARTITION:INPUT_OFFSET:TRANSFORMED"
where TRANSFORMED = "X" + str(SEQ * 7 + 3) (harness.py checks it).

Progress lines on stdout (read by the harness, which kills us right after an "open" line):
  ready INCARNATION                 init_transactions() done
  open TXN n=COUNT                  records produced and flushed, commit not started yet
  committing TXN                    about to send offsets and commit
  committed TXN n=COUNT             commit_transaction() returned
  aborted TXN REASON                transaction aborted (abortable error), consumer rewound
  aborted TXN voluntarily n=COUNT   every --abort-every'th transaction is aborted on purpose
                                    after send_offsets_to_transaction(), consumer rewound
  recreate REASON                   fatal error: producer and consumer are re-created
  done                              the group's committed offsets reached the input's ends

Error handling follows the librdkafka transactional API docs: retriable errors -> call the
same function again; txn_requires_abort -> abort_transaction() and rewind the consumer to
the committed offsets; anything else is fatal -> close and re-create producer and consumer
(the new init_transactions() fences/aborts what was left over).
"""

import argparse
import os
import random
import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException,
                             Producer, TopicPartition)


# TXN_RESTART_SELFTEST=broken: a deliberately wrong processor (commits its output, then
# the consumer offsets outside the transaction) to check that the harness catches it.
BROKEN = os.environ.get("TXN_RESTART_SELFTEST") == "broken"


def say(*parts):
    print(*parts, flush=True)


class Recreate(Exception):
    """Fatal error: start a new incarnation (new producer + consumer) in this process."""


def kafka_error(exc):
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def retrying(what, fn, limit=180.0):
    """Call fn() again while it raises a retriable KafkaError (e.g. the server is down)."""
    deadline = time.time() + limit
    while True:
        try:
            return fn()
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.retriable() and time.time() < deadline:
                sys.stderr.write(f"{what}: retriable error {err.name()}: {err.str()}; retrying\n")
                time.sleep(0.3)
                continue
            raise


def transform(seq):
    return "X" + str(seq * 7 + 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--in-topic", required=True)
    ap.add_argument("--out-topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--txn-id", required=True)
    ap.add_argument("--ends", required=True, help="input end offsets: P=OFF,P=OFF,...")
    ap.add_argument("--chunk", type=int, default=150)
    ap.add_argument("--think-ms", default="20-80",
                    help="random pause between flushing the records and committing")
    ap.add_argument("--abort-every", type=int, default=11,
                    help="abort every Nth transaction on purpose (0: never)")
    ap.add_argument("--incarnation", default="0")
    args = ap.parse_args()

    ends = {int(p): int(o) for p, o in (kv.split("=") for kv in args.ends.split(","))}
    lo, hi = (int(x) for x in args.think_ms.split("-"))
    rnd = random.Random()

    incarnation = 0
    while True:
        incarnation += 1
        try:
            if run(args, ends, lo, hi, rnd, f"{args.incarnation}.{incarnation}"):
                say("done")
                return 0
        except Recreate as exc:
            say(f"recreate {exc}")
            time.sleep(1.0)


def debug_conf():
    # TXN_RESTART_DEBUG=eos,cgrp,broker,protocol -> librdkafka debug logs on stderr
    dbg = os.environ.get("TXN_RESTART_DEBUG")
    conf = {"debug": dbg} if dbg else {}
    # librdkafka >= 2.10 "re-bootstraps" when every broker is down (as with our single
    # server killed) and decommissions the known brokers; a transactional producer
    # whose group coordinator was decommissioned then hangs in
    # send_offsets_to_transaction() past its timeout (librdkafka issue #5511, seen here
    # with Apache Kafka). With one server at a fixed address re-bootstrapping is useless.
    conf["metadata.recovery.strategy"] = os.environ.get("TXN_RESTART_RECOVERY_STRATEGY", "none")
    return conf


def run(args, ends, think_lo, think_hi, rnd, name):
    producer = Producer({
        **debug_conf(),
        "bootstrap.servers": args.bootstrap,
        "transactional.id": args.txn_id,
        "transaction.timeout.ms": 60000,
        "message.timeout.ms": 60000,
        "linger.ms": 5,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
    })
    consumer = None
    try:
        try:
            retrying("init_transactions", lambda: producer.init_transactions(10))
        except KafkaException as exc:
            raise Recreate(f"init_transactions: {exc}")
        say(f"ready {name}")

        consumer = Consumer({
            **debug_conf(),
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 1000,
        })
        consumer.subscribe([args.in_topic])
        all_parts = [TopicPartition(args.in_topic, p) for p in sorted(ends)]
        txn = 0

        while True:
            msgs = consumer.consume(num_messages=args.chunk, timeout=0.5)
            batch = []
            for m in msgs:
                err = m.error()
                if err is None:
                    batch.append(m)
                elif err.fatal():
                    raise Recreate(f"consumer fatal error {err}")
                else:
                    sys.stderr.write(f"consumer error (ignored): {err}\n")
            if not batch:
                if finished(consumer, all_parts, ends):
                    return True
                continue

            txn += 1
            try:
                producer.begin_transaction()
            except KafkaException as exc:
                raise Recreate(f"begin_transaction: {exc}")

            next_offsets = {}
            try:
                for m in batch:
                    seq = int(m.key().decode())
                    value = f"{seq}:{m.partition()}:{m.offset()}:{transform(seq)}"
                    while True:
                        try:
                            producer.produce(args.out_topic, key=m.key(), value=value.encode(),
                                             partition=m.partition())
                            break
                        except BufferError:
                            producer.poll(0.1)
                    next_offsets[m.partition()] = m.offset() + 1
                # Make sure the records reached the server before we announce the open
                # transaction (so a kill now leaves records that must be aborted).
                deadline = time.time() + 60
                while producer.flush(1.0) > 0 and time.time() < deadline:
                    pass
                offsets = [TopicPartition(args.in_topic, p, o) for p, o in sorted(next_offsets.items())]
                if BROKEN:
                    # Harness self-test: output committed first, offsets committed apart.
                    retrying("commit_transaction", lambda: producer.commit_transaction(10))
                say(f"open {txn} n={len(batch)}")
                time.sleep(rnd.uniform(think_lo, think_hi) / 1000.0)

                say(f"committing {txn}")
                if BROKEN:
                    consumer.commit(offsets=offsets, asynchronous=False)
                else:
                    retrying("send_offsets_to_transaction",
                             lambda: producer.send_offsets_to_transaction(
                                 offsets, consumer.consumer_group_metadata(), 10))
                    if args.abort_every and txn % args.abort_every == 0:
                        # A voluntary abort after the offsets were sent: the records and
                        # the group offsets of this transaction must both be discarded.
                        retrying("abort_transaction", lambda: producer.abort_transaction(10))
                        say(f"aborted {txn} voluntarily n={len(batch)}")
                        rewind(consumer, args.in_topic, sorted(next_offsets))
                        continue
                    retrying("commit_transaction", lambda: producer.commit_transaction(10))
                say(f"committed {txn} n={len(batch)}")
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None and err.txn_requires_abort():
                    try:
                        retrying("abort_transaction", lambda: producer.abort_transaction(10))
                    except KafkaException as exc2:
                        raise Recreate(f"abort_transaction: {exc2}")
                    say(f"aborted {txn} {err.name()}")
                    rewind(consumer, args.in_topic, sorted(next_offsets))
                else:
                    raise Recreate(f"transaction {txn}: {exc}")
    finally:
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                sys.stderr.write(f"consumer.close: {exc}\n")
        # The producer is dropped without flushing: the next init_transactions() aborts
        # whatever it left open.


def finished(consumer, parts, ends):
    """True when the group's committed offsets have reached the input's end offsets."""
    try:
        committed = consumer.committed(parts, timeout=10)
    except KafkaException as exc:
        sys.stderr.write(f"committed(): {exc}\n")
        return False
    return all(tp.error is None and tp.offset >= ends[tp.partition] for tp in committed)


def rewind(consumer, topic, partitions):
    """After an abort: move the partitions the aborted transaction consumed from back to
    the group's committed offsets (those records must be processed again)."""
    if not partitions:
        return
    parts = [TopicPartition(topic, p) for p in partitions]
    try:
        committed = retrying("committed", lambda: consumer.committed(parts, timeout=10))
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
    except KafkaException as exc:
        raise Recreate(f"rewind after abort: {exc}")


if __name__ == "__main__":
    sys.exit(main())
