"""Incremental fetch sessions (KIP-227) with a real client: Kafka 4.3.1's console
consumer (the Java client) reads a topic of 2,000 partitions from the beginning. Checked:
every record arrives exactly once, and the agent's shoal_fetch_requests_total counts
incremental fetches for it (the Java client sends them once its session is open).

    python run.py BOOTSTRAP METRICS_URL KAFKA4_LIBS
"""
import os
import re
import subprocess
import sys
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, metrics_url, libs = sys.argv[1:4]
TOPIC, PARTITIONS, RECORDS = f"fetch-sessions-{os.getpid()}", 2000, 20000
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def fetches():
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    found = dict(re.findall(r'^shoal_fetch_requests_total\{kind="(\w+)"\} (\d+)$', text, re.M))
    return int(found.get("full", 0)), int(found.get("incremental", 0))


admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(60)
producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
for i in range(RECORDS):
    producer.produce(TOPIC, value=f"r{i}".encode(), partition=i % PARTITIONS)
check(producer.flush(60) == 0, f"{RECORDS} records over {PARTITIONS} partitions acknowledged")
full0, inc0 = fetches()
out = subprocess.run(
    ["java", "-cp", os.path.join(libs, "*"), "org.apache.kafka.tools.consumer.ConsoleConsumer",
     "--bootstrap-server", bootstrap, "--topic", TOPIC, "--from-beginning",
     "--timeout-ms", "8000", "--consumer-property", "fetch.max.wait.ms=200"],
    capture_output=True, text=True, timeout=300).stdout.splitlines()
values = [v for v in out if re.fullmatch(r"r\d+", v)]
check(len(values) == RECORDS and len(set(values)) == RECORDS,
      f"the console consumer read every record once ({len(values)} read, {len(set(values))} distinct)")
full1, inc1 = fetches()
print(f"     fetches during the read: {full1 - full0} full, {inc1 - inc0} incremental", flush=True)
check(inc1 - inc0 > 0, "the Java client read through an incremental fetch session")
check(inc1 - inc0 > full1 - full0, "most of its fetches were incremental")
# The suites after this one share the server: leave them no 2,000-partition topic.
admin.delete_topics([TOPIC])[TOPIC].result(60)
print(f"fetch sessions: {len(failures)} failed", flush=True)
sys.exit(1 if failures else 0)
