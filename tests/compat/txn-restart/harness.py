"""Exactly-once consume-transform-produce across crashes (see README.md).

  harness.py shoal PATH_TO_SHOAL      own Shoal playground (SIGKILLed and restarted once)
  harness.py kafka                    own throw-away Apache Kafka 4.3.1 (the same)

Last line: `txn-restart: passed` or `txn-restart: failed: REASON`; exit status 0 / 1.
"""

import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import servers

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "txn-restart"
PARTITIONS = int(os.environ.get("TXN_RESTART_PARTITIONS", "3"))
RECORDS = int(os.environ.get("TXN_RESTART_RECORDS", "20000"))
PROCESSOR_KILLS = int(os.environ.get("TXN_RESTART_KILLS", "3"))
TOTAL_SECONDS = int(os.environ.get("TXN_RESTART_SECONDS", "240"))
SERVER_DOWN_SECONDS = float(os.environ.get("TXN_RESTART_SERVER_DOWN", "3"))
STALL_SECONDS = 60  # no committed progress for this long -> fail


Failed = servers.Failed


procs = []  # every processor process started (killed in main()'s cleanup)


def log(*parts):
    print(*parts, flush=True)


class Processor:
    """One processor process; a thread copies its stdout lines into a queue."""

    def __init__(self, argv, workdir, number):
        self.number = number
        self.stderr_path = os.path.join(workdir, f"processor-{number}.stderr")
        self.stdout_path = os.path.join(workdir, f"processor-{number}.stdout")
        err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv + ["--incarnation", str(number)], stdout=subprocess.PIPE,
                                     stderr=err, stdin=subprocess.DEVNULL,
                                     preexec_fn=servers.die_with_parent)
        err.close()
        self.lines = queue.Queue()
        self.all_lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        with open(self.stdout_path, "w") as out:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").strip()
                out.write(line + "\n")
                self.all_lines.append(line)
                self.lines.put(line)
        self.lines.put(None)  # EOF

    def kill9(self):
        self.proc.kill()
        self.proc.wait(30)
        self.reader.join(10)

    def last_txn_line(self):
        for line in reversed(self.all_lines):
            if line.split()[0] in ("open", "committing", "committed", "aborted"):
                return line
        return None


def main():
    mode = sys.argv[1]
    workdir = tempfile.mkdtemp(prefix="shoal-txn-restart.")
    port = servers.free_port()
    if mode == "kafka":
        server = servers.KafkaServer(workdir, port, extra_props=[
            "offsets.topic.num.partitions=4", "transaction.state.log.num.partitions=4",
            # a SIGKILLed broker may re-register (restart) quickly
            "broker.heartbeat.interval.ms=500", "broker.session.timeout.ms=2000"],
            max_seconds=TOTAL_SECONDS + 60)
    else:
        binary = os.path.abspath(sys.argv[2])
        if not os.access(binary, os.X_OK):
            log(f"{NAME}: failed: no executable Shoal binary at {binary}")
            return 1
        server = servers.ShoalServer(binary, workdir, port)

    started = time.time()
    result = None
    try:
        log(f"{NAME}: server {server.kind} on {server.bootstrap}, work dir {workdir}")
        server.start()
        log(f"{NAME}: server up after {time.time() - started:.1f}s")
        run_test(server, workdir)
    except Failed as exc:
        result = str(exc)
    except Exception as exc:  # noqa: BLE001 - any crash of the harness is a failure
        result = f"{type(exc).__name__}: {exc}"
    finally:
        for pr in procs:
            if pr.proc.poll() is None:
                pr.kill9()
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001
            log(f"stopping the server: {exc}")
        if result is not None:
            log(f"--- last lines of the server log ({server.log_path}):")
            log(server.log_tail(30))
            for name in sorted(os.listdir(workdir)):
                if name.startswith("processor-") and name.endswith(".stderr"):
                    log(f"--- {name} (last lines):")
                    log(servers.tail(os.path.join(workdir, name), 8))
        if os.environ.get("TXN_RESTART_KEEP") == "1":
            log(f"keeping {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    log(f"{NAME}: total {time.time() - started:.1f}s")
    if result is None:
        log(f"{NAME}: passed")
        return 0
    log(f"{NAME}: failed: {result}")
    return 1


def check(ok, what):
    if ok:
        log(f"ok: {what}")
    else:
        log(f"FAILED: {what}")
        raise Failed(what)


def run_test(server, workdir):
    bs = server.bootstrap
    run = uuid.uuid4().hex[:8]
    in_topic, out_topic = f"txn-in-{run}", f"txn-out-{run}"
    group, txn_id = f"txn-group-{run}", f"txn-processor-{run}"

    admin = AdminClient({"bootstrap.servers": bs})
    for topic, fut in admin.create_topics([NewTopic(in_topic, PARTITIONS, 1),
                                           NewTopic(out_topic, PARTITIONS, 1)]).items():
        fut.result(30)
    del admin
    log(f"created {in_topic} and {out_topic} ({PARTITIONS} partitions each)")

    # 1. Input: RECORDS numbered records from an idempotent producer.
    delivered, errors = [0], []

    def on_delivery(err, msg):
        if err is None:
            delivered[0] += 1
        else:
            errors.append(err)

    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "linger.ms": 5,
                  "max.in.flight.requests.per.connection": 5})
    t0 = time.time()
    for i in range(RECORDS):
        while True:
            try:
                p.produce(in_topic, key=str(i).encode(), value=f"rec-{i}".encode(),
                          partition=i % PARTITIONS, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        if i % 1000 == 0:
            p.poll(0)
    remaining = p.flush(60)
    del p  # (no reconnect attempts while the server is down later)
    check(remaining == 0 and not errors and delivered[0] == RECORDS,
          f"idempotent producer wrote {delivered[0]}/{RECORDS} input records "
          f"({len(errors)} errors{': ' + str(errors[0]) if errors else ''}) in {time.time() - t0:.1f}s")

    input_parts = read_all(bs, in_topic, "read_committed", expect=RECORDS)
    ends = {p: len(input_parts[p]) for p in sorted(input_parts)}
    expected = {p: [int(k) for _, k, _ in recs] for p, recs in input_parts.items()}
    check(sorted(s for seqs in expected.values() for s in seqs) == list(range(RECORDS)),
          f"input topic holds every record exactly once ({sum(ends.values())} records)")
    check(all(offs == list(range(len(offs))) for offs in
              ([o for o, _, _ in recs] for recs in input_parts.values())),
          "input offsets are dense (0, 1, 2, ...) in every partition")

    # 2. The processor, killed and restarted; the server killed and restarted once.
    argv = [sys.executable, os.path.join(HERE, "processor.py"), "--bootstrap", bs,
            "--in-topic", in_topic, "--out-topic", out_topic, "--group", group,
            "--txn-id", txn_id, "--ends", ",".join(f"{p}={o}" for p, o in sorted(ends.items()))]
    rnd = random.Random()
    # (kind, fraction of the input committed before the kill), at random moments
    plan = []
    lo, step = 0.08, 0.72 / (PROCESSOR_KILLS + 1)
    for k in range(PROCESSOR_KILLS + 1):
        plan.append(["processor", lo + step * k + rnd.uniform(0, step * 0.8)])
    plan[(PROCESSOR_KILLS + 1) // 2][0] = "server"
    log("plan: " + ", ".join(f"kill the {k} at ~{f * 100:.0f}%" for k, f in plan))

    number = [0]

    def spawn():
        number[0] += 1
        pr = Processor(argv, workdir, number[0])
        procs.append(pr)
        return pr

    processor = spawn()
    progress = 0          # input records in committed transactions (all incarnations)
    mid_txn_kills = 0     # processor kills between "open" and "committing"
    other_kills = 0
    server_kills = 0
    aborted_seen = 0
    voluntary_aborts = 0
    aborted_records = 0   # records in transactions that must have been aborted
    recreated = 0
    last_progress_at = time.time()
    deadline = started = time.time()
    deadline += TOTAL_SECONDS - 40
    done = False
    step_i = 0

    while not done:
        if time.time() > deadline:
            raise Failed(f"timed out: {progress}/{RECORDS} processed, "
                         f"{mid_txn_kills} processor kills done")
        if time.time() - last_progress_at > STALL_SECONDS:
            raise Failed(f"no progress for {STALL_SECONDS}s at {progress}/{RECORDS} "
                         f"(processor {processor.number}: last line "
                         f"{processor.all_lines[-1] if processor.all_lines else None!r})")
        try:
            line = processor.lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:  # the processor exited by itself
            rc = processor.proc.wait(30)
            if rc == 0 and processor.all_lines and processor.all_lines[-1] == "done":
                if mid_txn_kills < PROCESSOR_KILLS or server_kills < 1:
                    raise Failed(f"the processor finished before all kills were done "
                                 f"({mid_txn_kills} processor kills, {server_kills} server kills)")
                done = True
                break
            raise Failed(f"processor {processor.number} exited by itself with status {rc} "
                         f"(last line {processor.all_lines[-1] if processor.all_lines else None!r})")
        word = line.split()[0]
        if word == "committed":
            progress += int(line.split("n=")[1])
            last_progress_at = time.time()
        elif word == "aborted" and "voluntarily" in line:
            voluntary_aborts += 1
            aborted_records += int(line.split("n=")[1])
        elif word == "aborted":
            aborted_seen += 1
            log(f"processor {processor.number}: {line}")
        elif word == "recreate":
            recreated += 1
            log(f"processor {processor.number}: {line}")
            if recreated > 10:
                raise Failed(f"the processor had to re-create its clients {recreated} times "
                             f"(last: {line})")
        elif word == "ready":
            log(f"processor {processor.number}: {line} (progress {progress}/{RECORDS})")

        if word != "open" or step_i >= len(plan) or progress < plan[step_i][1] * RECORDS:
            continue
        kind = plan[step_i][0]
        step_i += 1

        # Kill now: the processor has just flushed a transaction's records and not yet
        # started to commit (it pauses 20-80 ms there).
        if kind == "server":
            server.kill9()
            server_kills += 1
            log(f"SIGKILLed the server at {progress}/{RECORDS} right after the processor's "
                f"'{line}'")
            time.sleep(SERVER_DOWN_SECONDS)
            t0 = time.time()
            server.start()
            log(f"server restarted on the same data dir and port in {time.time() - t0:.1f}s")
            last_progress_at = time.time()
            continue

        processor.kill9()
        last = processor.last_txn_line()
        if last == line:
            mid_txn_kills += 1
            aborted_records += int(line.split("n=")[1])
            log(f"SIGKILLed processor {processor.number} at {progress}/{RECORDS} during "
                f"'{line}' (commit not started)")
        else:
            other_kills += 1
            log(f"SIGKILLed processor {processor.number} at {progress}/{RECORDS}, but it had "
                f"already gone on to '{last}'; one more kill will follow")
            if other_kills > 5:
                raise Failed("could not kill the processor inside a transaction")
            plan.insert(step_i, ["processor", 0.0])
        # Drain nothing more from the dead one; its committed lines after `line` count.
        for extra in processor.all_lines[processor.all_lines.index(line) + 1:]:
            if extra.startswith("committed"):
                progress += int(extra.split("n=")[1])
            elif extra.startswith("aborted") and "voluntarily" in extra:
                voluntary_aborts += 1
                aborted_records += int(extra.split("n=")[1])
        time.sleep(rnd.uniform(0.0, 0.5))
        processor = spawn()
        last_progress_at = time.time()

    log(f"processor finished: {len(procs)} incarnations, {mid_txn_kills} SIGKILLs inside a "
        f"transaction, {other_kills} other SIGKILLs, {server_kills} server SIGKILL(s), "
        f"{voluntary_aborts} voluntary aborts, {aborted_seen} aborts on errors, "
        f"{recreated} in-process re-creations; "
        f"processing took {time.time() - started:.1f}s")
    check(mid_txn_kills >= PROCESSOR_KILLS,
          f"{mid_txn_kills} processor SIGKILLs landed inside an open transaction")
    check(server_kills == 1, "the server was SIGKILLed and restarted once while the processor worked")
    check(voluntary_aborts > 0, f"the processor aborted {voluntary_aborts} transactions on purpose "
          "(after sending their offsets) and went on")

    # 3. Verify the output.
    committed = read_all(bs, out_topic, "read_committed", expect=RECORDS)
    uncommitted = read_all(bs, out_topic, "read_uncommitted", expect=RECORDS)
    n_committed = sum(len(v) for v in committed.values())
    n_uncommitted = sum(len(v) for v in uncommitted.values())
    log(f"output: {n_committed} records visible to read_committed, {n_uncommitted} to "
        f"read_uncommitted ({n_uncommitted - n_committed} from aborted transactions)")

    seen = {}
    bad_format = wrong_partition = 0
    for p, recs in committed.items():
        for _, key, value in recs:
            try:
                seq_s, in_p, in_off, transformed = value.split(":")
                seq = int(seq_s)
            except ValueError:
                bad_format += 1
                continue
            seen[seq] = seen.get(seq, 0) + 1
            if (int(in_p) != p or key != seq_s or transformed != "X" + str(seq * 7 + 3)
                    or input_parts[p][int(in_off)][1] != seq_s):
                wrong_partition += 1
    missing = [s for s in range(RECORDS) if s not in seen]
    dups = sum(c - 1 for c in seen.values() if c > 1)
    out_of_order = 0
    for p in range(PARTITIONS):
        got = [int(v.split(":")[0]) for _, _, v in committed.get(p, [])]
        if got != expected[p]:
            # count positions where the order differs from the input's (after dedup)
            dedup = []
            seen_p = set()
            for s in got:
                if s not in seen_p:
                    seen_p.add(s)
                    dedup.append(s)
            want = [s for s in expected[p] if s in seen_p]
            out_of_order += sum(1 for a, b in zip(dedup, want) if a != b)
    log(f"read_committed output: {n_committed} records, {len(seen)} distinct inputs, "
        f"{len(missing)} missing, {dups} duplicates, {out_of_order} out of order, "
        f"{bad_format} malformed, {wrong_partition} with wrong partition/offset/transform")
    check(bad_format == 0 and wrong_partition == 0,
          "every output record is the transform of the input record it names, in the same partition")
    check(not missing, f"no input record lost ({len(missing)} missing"
          f"{', e.g. ' + str(missing[:5]) if missing else ''})")
    check(dups == 0, f"no input record duplicated ({dups} duplicates)")
    check(all([int(v.split(':')[0]) for _, _, v in committed.get(p, [])] == expected[p]
              for p in range(PARTITIONS)),
          "every output partition holds its input partition's records once each, in input order")
    check(n_uncommitted - n_committed >= aborted_records,
          f"the log holds {n_uncommitted - n_committed} records of aborted transactions that "
          f"read_committed skipped (at least the {aborted_records} of the transactions aborted "
          "on purpose or left open by a SIGKILLed processor)")

    # The group's offsets are at the input's ends.
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "isolation.level": "read_committed"})
    try:
        got = c.committed([TopicPartition(in_topic, p) for p in range(PARTITIONS)], timeout=15)
    finally:
        c.close()
    offs = {tp.partition: tp.offset for tp in got}
    check(offs == ends, f"the group's committed offsets {offs} are the input's end offsets {ends}")


def read_all(bs, topic, isolation, expect, timeout=60):
    """All records of `topic` per partition: [(offset, key, value)], read until every
    partition reported end-of-partition (for read_committed: the last stable offset)."""
    c = Consumer({"bootstrap.servers": bs, "group.id": f"verify-{uuid.uuid4().hex[:8]}",
                  "isolation.level": isolation, "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    parts = {}
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        at_eof = set()
        deadline = time.time() + timeout
        last_record_at = time.time()
        while time.time() < deadline:
            total = sum(len(v) for v in parts.values())
            # (Transaction markers are written after EndTxn returns: for read_committed the
            # end may still move; wait a little when fewer records than expected arrived.)
            if len(at_eof) == PARTITIONS and (total >= expect or time.time() - last_record_at > 5):
                break
            for m in c.consume(500, 0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    raise Failed(f"reading {topic} ({isolation}): {err}")
                at_eof.discard(m.partition())
                last_record_at = time.time()
                parts.setdefault(m.partition(), []).append(
                    (m.offset(), m.key().decode(), m.value().decode()))
        if len(at_eof) < PARTITIONS:
            raise Failed(f"reading {topic} ({isolation}) did not reach the end of every "
                         f"partition within {timeout}s (got {sum(len(v) for v in parts.values())} "
                         f"records, expected {expect}+)")
    finally:
        c.close()
    return parts


if __name__ == "__main__":
    servers.run(main, TOTAL_SECONDS)
