"""A consumer-group member of the KIP-848 protocol (group.protocol=consumer) on
librdkafka (confluent-kafka), driven by run.py; prints the same lines as Member.java.
GROUP_PROTOCOL=classic in its environment makes it a classic-protocol member.

    python member.py BOOTSTRAP GROUP TOPIC INSTANCE_ID|- [ASSIGNOR]
"""
import os
import signal
import sys

from confluent_kafka import Consumer, KafkaException

bootstrap, group, topic, instance = sys.argv[1:5]
conf = {
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "group.protocol": os.environ.get("GROUP_PROTOCOL", "consumer"),
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "client.id": f"rdkafka-{instance}",
}
if instance != "-":
    conf["group.instance.id"] = instance
if len(sys.argv) > 5:
    conf["group.remote.assignor"] = sys.argv[5]
owned = set()
stop = False


def report():
    print("assigned " + (",".join(str(p) for p in sorted(owned)) or "-"), flush=True)


def on_assign(c, ps):
    owned.update(p.partition for p in ps)
    report()


def on_revoke(c, ps):
    try:
        c.commit(asynchronous=False)
    except KafkaException as e:
        print(f"commit on revoke: {e}", file=sys.stderr)
    owned.difference_update(p.partition for p in ps)
    report()


def on_lost(c, ps):
    owned.difference_update(p.partition for p in ps)
    report()


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
c = Consumer(conf)
c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
while not stop:
    msgs = c.consume(500, 0.5)
    for m in msgs:
        if m.error():
            print(f"error {m.error()}", file=sys.stderr)
            continue
        print(f"rec {m.partition()} {m.offset()} {m.value().decode()}")
    sys.stdout.flush()
    if any(not m.error() for m in msgs):
        try:
            c.commit(asynchronous=False)
        except KafkaException as e:
            print(f"commit: {e}", file=sys.stderr)
c.close()
print("closed", flush=True)
