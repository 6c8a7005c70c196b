"""Shoal's Jepsen-style checker: a real-client workload on a 3-agent cluster (etcd, MinIO)
while faults are injected one after another, then checks of everything the clients saw
against a final read-back of the whole log (see run.sh for how to run it).

    checker.py --shoal BIN --minio BIN --kafka-libs DIR [--etcd BIN] [--minutes M]
               [--faults LIST] [--agents N] [--workdir DIR] [--report FILE] [--seed S]

--kafka-libs is the directory of the Kafka 4.x client jars (bench/kafka/fetch-kafka.sh 4)
for the Java transactional producer; without them (or without java) the run fails.

Timeline: cluster start (etcd, MinIO, a TCP fault proxy per agent link, N agents), topics,
the workload (clients.py), a `baseline` phase, then the faults of LIST in turn (cycling
through LIST again while time is left), each followed by a recovery, then `final`: the
producers stop and flush, the consumers catch up, and the whole of both topics is read
back with assign() (no group) in both isolation levels. checks.py then compares.

Every agent reaches etcd and MinIO through its own proxies (proxy.py), and the other
agents reach its peer-cache endpoint (--peer-listen on 127.0.0.2, advertised on
127.0.0.1 through a proxy), so each link can be cut alone. The report (a table of
anomaly counts per phase and check, the figures, the first anomalies of each kind, the
faults that could not be run) is printed and written to --report; the whole history goes
to WORKDIR/history.json. Exit status 0 only when there is no anomaly, every fault ran and
the read-back was complete.
"""

import argparse
import glob
import os
import shutil
import sys
import threading
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))

import cluster as cl  # noqa: E402
import workload as wl  # noqa: E402
from checks import CHECKS, analyse, table  # noqa: E402
from clients import JavaTxnProducer, Member, OffsetWatcher, Producer, TxnProducer  # noqa: E402
from faults import ALL_FAULTS, Nemesis, NotRun  # noqa: E402
from history import History  # noqa: E402
from proxy import Proxy  # noqa: E402

TOPIC, TOPIC_PARTITIONS = "checker", 6
TXN_TOPIC, TXN_PARTITIONS = "checker-txn", 3
SHORT_FAULTS = "kill-agent,pause-agent,partition-agent-etcd,skew-agent"


class CheckerAgent(cl.Agent):
    """An agent whose etcd, MinIO and peer links go through fault proxies."""

    def __init__(self, cluster, name, proxies, peer_port):
        super().__init__(cluster, name)
        self.proxies = proxies
        self.peer_port = peer_port
        self.faketime = None  # (library, seconds) while skewed

    def command(self):
        c = self.cluster
        return [c.binary, "agent",
                "--metadata", f"etcd://{self.proxies['etcd'].address}/{c.prefix}",
                "--object-store", f"s3://{c.minio.bucket}/{c.prefix}",
                "--listen", self.address, "--advertise", self.address,
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                "--peer-listen", f"127.0.0.2:{self.peer_port}",
                # Stable ids, as a StatefulSet gives: a killed agent restarted at once
                # must wait out its old lease and take its id back, not exit.
                "--node-id", str(int(self.name.removeprefix("agent")) + 1),
                "--batch-timeout", c.batch_timeout]

    def env(self):
        env = super().env()
        # The default grace: it is what keeps librdkafka from resending requests still in
        # flight at an agent that dropped out of the registry.
        env.pop("SHOAL_DEPARTED_AGENT_GRACE", None)
        env["AWS_ENDPOINT_URL"] = f"http://{self.proxies['minio'].address}"
        if self.faketime:
            lib, seconds = self.faketime
            env.update(LD_PRELOAD=lib, FAKETIME=f"{seconds:+d}",
                       FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_NO_CACHE="1")
        return env


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--minio", required=True)
    ap.add_argument("--etcd", default="etcd")
    ap.add_argument("--kafka-libs", required=True,
                    help="the Kafka 4.x client jars (bench/kafka/fetch-kafka.sh 4)")
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--faults", default=SHORT_FAULTS,
                    help=f"comma-separated, or 'all' ({','.join(ALL_FAULTS)})")
    ap.add_argument("--agents", type=int, default=3)
    ap.add_argument("--hold", type=float, default=15.0, help="seconds a partition or skew lasts")
    ap.add_argument("--pause", type=float, default=15.0, help="seconds a SIGSTOP lasts")
    ap.add_argument("--recover", type=float, default=10.0, help="seconds after each fault")
    ap.add_argument("--skew", type=int, default=300, help="clock skew in seconds")
    ap.add_argument("--workdir")
    ap.add_argument("--report")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    faults = ALL_FAULTS if args.faults == "all" else [f for f in args.faults.split(",") if f]
    for f in faults:
        if f not in ALL_FAULTS:
            print(f"checker: unknown fault {f!r} (known: {', '.join(ALL_FAULTS)})")
            return 2
    if not shutil.which("java") or not glob.glob(os.path.join(args.kafka_libs, "kafka-clients-4.*.jar")):
        print(f"checker: the Java producer needs java on PATH and kafka-clients 4.x in "
              f"{args.kafka_libs}")
        return 2
    total = int(args.minutes * 60)
    return cl.run(lambda: check(args, faults, total), total + 240)


def check(args, faults, total):
    t_start = time.time()
    servers = cl.Servers(args.shoal, args.minio, args.etcd, keep=args.keep, workdir=args.workdir)
    wl.client_logger(servers.client_log)
    print(f"checker: work directory {servers.workdir}", flush=True)
    cluster = cl.Cluster(servers, "checker")
    proxies = {}
    for i in range(args.agents):
        name = f"agent{i}"
        peer_port = cl.free_port()
        proxies[name] = {"etcd": Proxy(f"{name}-etcd", servers.etcd.port),
                         "minio": Proxy(f"{name}-minio", servers.minio.port),
                         "agent": Proxy(f"{name}-peer", peer_port, "127.0.0.2", port=peer_port)}
        cluster.agents.append(CheckerAgent(cluster, name, proxies[name], peer_port))
    agents = cluster.agents
    boot = [",".join(a.address for a in agents[i:] + agents[:i]) for i in range(len(agents))]
    n = len(boot)
    h = History()
    stop_produce, stop_consume, stop_watch = threading.Event(), threading.Event(), threading.Event()
    # Started first, so that the source launcher compiles while etcd, MinIO and the agents
    # come up; the producer waits for its thread's start.
    jtxn = JavaTxnProducer(h, "jtxn0", boot[2 % n], TXN_TOPIC, TXN_PARTITIONS, stop_produce,
                           args.seed + 2, args.kafka_libs)
    servers.start()
    cluster.start_all()
    wl.create_topic(boot[0], TOPIC, TOPIC_PARTITIONS)
    wl.create_topic(boot[0], TXN_TOPIC, TXN_PARTITIONS)
    problem = wl.wait_topic([a.address for a in agents], TOPIC, TOPIC_PARTITIONS) or \
        wl.wait_topic([a.address for a in agents], TXN_TOPIC, TXN_PARTITIONS)
    if problem:
        raise cl.Failed(f"topics not ready: {problem}")
    print(f"checker: {len(agents)} agents up, topics {TOPIC} and {TXN_TOPIC} ready after "
          f"{time.time() - t_start:.0f}s", flush=True)

    producers = [Producer(h, "idem", "idem0", boot[0], TOPIC, 100, stop_produce),
                 Producer(h, "idem", "idem1", boot[1 % n], TOPIC, 100, stop_produce),
                 Producer(h, "plain", "plain0", boot[2 % n], TOPIC, 50, stop_produce),
                 TxnProducer(h, "txn0", boot[0], TXN_TOPIC, TXN_PARTITIONS, stop_produce, args.seed),
                 TxnProducer(h, "txn1", boot[1 % n], TXN_TOPIC, TXN_PARTITIONS, stop_produce,
                             args.seed + 1),
                 jtxn]
    members = [Member(h, "manual0", boot[0], "g-manual", TOPIC, "read_uncommitted", "manual", stop_consume),
               Member(h, "manual1", boot[1 % n], "g-manual", TOPIC, "read_uncommitted", "manual", stop_consume),
               Member(h, "auto0", boot[2 % n], "g-auto", TOPIC, "read_uncommitted", "auto", stop_consume),
               Member(h, "auto1", boot[0], "g-auto", TOPIC, "read_uncommitted", "auto", stop_consume),
               Member(h, "rc0", boot[1 % n], "g-rc", TXN_TOPIC, "read_committed", "manual", stop_consume),
               Member(h, "rc1", boot[2 % n], "g-rc", TXN_TOPIC, "read_committed", "manual", stop_consume),
               Member(h, "rcauto0", boot[0], "g-rc-auto", TXN_TOPIC, "read_committed", "auto", stop_consume)]
    groups = {"g-manual": (TOPIC, TOPIC_PARTITIONS), "g-auto": (TOPIC, TOPIC_PARTITIONS),
              "g-rc": (TXN_TOPIC, TXN_PARTITIONS), "g-rc-auto": (TXN_TOPIC, TXN_PARTITIONS)}
    watcher = OffsetWatcher(h, boot[0], groups, stop_watch)
    h.t0 = h.now()  # the report's times count from the workload's start
    h.phase("baseline")
    for t in members + producers + [watcher]:
        t.start()

    ctx = Ctx()
    ctx.servers, ctx.cluster, ctx.agents, ctx.proxies = servers, cluster, agents, proxies
    nem = Nemesis(ctx, pause=args.pause, skew=args.skew)
    not_run = []
    final_reserve = 45  # producers' flush, consumers' catch-up, read-back
    time.sleep(10)
    i = 0
    budget_end = t_start + total - final_reserve
    while faults and time.time() + fault_cost(faults[i % len(faults)], args) <= budget_end:
        fault = faults[i % len(faults)]
        target = nem.target(fault, i)
        h.phase(f"{fault} {target}", fault, target)
        print(f"checker: {time.time() - t_start:5.0f}s {fault} on {target}", flush=True)
        try:
            nem.run(fault, target, args.hold, h.note)
        except NotRun as exc:
            not_run.append(f"{fault}: {exc}")
            h.note(f"NOT RUN: {exc}")
            print(f"checker: fault {fault} NOT RUN: {exc}", flush=True)
        h.note("recovering")
        time.sleep(args.recover)
        i += 1
    ran = i
    for a in agents:  # any agent a fault left down is started again for the read-back
        if not a.alive():
            h.note(f"{a.name} found down; started")
            cluster.start_all(only=[a])

    h.phase("final")
    print(f"checker: {time.time() - t_start:5.0f}s final: stopping producers", flush=True)
    stop_produce.set()
    for p in producers:
        p.join(90)
    catch_up(h, members, 20)
    stop_consume.set()
    stop_watch.set()
    for m in members + [watcher]:
        m.join(15)
    end_t = time.monotonic()
    readback, rb_problems = {}, []
    for topic, parts, iso in ((TOPIC, TOPIC_PARTITIONS, "read_uncommitted"),
                              (TXN_TOPIC, TXN_PARTITIONS, "read_uncommitted"),
                              (TXN_TOPIC, TXN_PARTITIONS, "read_committed")):
        # A debug build on 2 cores reads back ~1,500 records/s: allow for that.
        acked = sum(1 for w in h.writes.values() if w["topic"] == topic and w["ack"])
        got, _highs, problems = wl.read_all(boot[0], topic, parts, timeout=90 + acked // 1000,
                                            client_id=f"readback-{iso}",
                                            extra_conf={"isolation.level": iso})
        readback[(topic, iso)] = got
        rb_problems += [f"{topic} {iso}: {p}" for p in problems]

    h.dump(os.path.join(servers.workdir, "history.json"))  # first: kept if the checks fail
    anomalies, info = analyse(h, readback, end_t)
    per_phase = defaultdict(lambda: [0, 0])
    with h.lock:
        for w in h.writes.values():
            if w["ack_t"] is not None:
                per_phase[h.phase_of(w["ack_t"])][0] += 1
            t = h.txns.get((w["producer"], w["txn"])) if w["kind"] == "txn" else None
            if w.get("err_t") is not None and not (t and t["intent"] == "abort"):
                per_phase[h.phase_of(w["err_t"])][1] += 1
    text, totals = table(h, anomalies, per_phase)

    harness = list(rb_problems)
    for t in producers + members + [watcher]:
        if t.exception is not None:
            harness.append(f"client {t.name} died: {t.exception!r}")
        if t.is_alive() and t in producers:
            harness.append(f"producer {t.name} did not finish")
    for a in agents:
        if not a.alive():
            harness.append(f"{a.name} is not running at the end")
        if "panicked" in a.log_text():
            harness.append(f"{a.name} panicked (see {a.log_path})")
    if ran == 0 and faults:
        harness.append("no fault fitted in the time given (--minutes)")

    lines = [f"Shoal checker: {len(agents)} agents, {args.minutes:g} min, faults "
             f"{','.join(faults)}, seed {args.seed}, {os.cpu_count()} cores",
             f"binary: {args.shoal}", "", text, ""]
    lines.append("phases:")
    for ph in h.phases:
        end = ph["end"] if ph["end"] is not None else end_t
        lines.append(f"  {ph['name']}: {round(ph['start'] - h.t0)}s - {round(end - h.t0)}s")
        lines += [f"    {x}" for x in ph["notes"]]
    lines.append("figures: " + ", ".join(f"{k} {v}" for k, v in sorted(info.items())))
    per_txn = defaultdict(lambda: defaultdict(int))
    with h.lock:
        for (producer, _n), t in h.txns.items():
            per_txn[producer][t["outcome"] or "unknown"] += 1
    lines.append("transactions (committed/aborted/unknown): " + ", ".join(
        f"{p} {c['committed']}/{c['aborted']}/{c['unknown']}" for p, c in sorted(per_txn.items())))
    errs = sorted(h.errors.items(), key=lambda kv: -kv[1])[:12]
    lines.append("client errors: " + (", ".join(f"{k} x{v}" for k, v in errs) or "none"))
    for c in CHECKS:
        these = [a for a in anomalies if a[0] == c]
        if these:
            lines.append(f"{c}: {len(these)}, first ones:")
            lines += [f"  [{h.phases[h.phase_of(t)]['name']}] {d}" for _, t, d in these[:8]]
    for x in not_run:
        lines.append(f"FAULT NOT RUN: {x}")
    for x in harness:
        lines.append(f"HARNESS: {x}")
    n_anom = sum(totals.values())
    ok = n_anom == 0 and not not_run and not harness
    lines.append(f"checker: {'PASSED' if ok else 'FAILED'}: {n_anom} anomalies, "
                 f"{len(not_run)} faults not run, {len(harness)} harness problems, "
                 f"{time.time() - t_start:.0f}s")
    report = "\n".join(lines)
    print("\n" + report, flush=True)
    if args.report:
        with open(args.report, "w") as f:
            f.write(report + "\n")
    return 0 if ok else 1


def fault_cost(fault, args):
    """Seconds a fault and its recovery take (to fit them into --minutes)."""
    if fault.startswith("kill"):
        return 10 + args.recover
    if fault.startswith("pause"):
        return args.pause + 2 + args.recover
    if fault == "skew-agent":
        return args.hold + 12 + args.recover
    return args.hold + args.recover


def catch_up(h, members, timeout):
    """Until each group has polled up to the last acknowledged offset of every partition
    it reads (or `timeout`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with h.lock:
            last_ack = defaultdict(lambda: -1)
            for w in h.writes.values():
                txn = h.txns.get((w["producer"], w["txn"])) if w["kind"] == "txn" else None
                if w["ack"] is not None and w["ack"][1] is not None and \
                        (txn is None or txn["outcome"] == "committed"):
                    k = (w["topic"], w["ack"][0])
                    last_ack[k] = max(last_ack[k], w["ack"][1])
            polled = defaultdict(lambda: -1)
            for (_c, g, _i, _r, topic, p, o, _v, _t) in h.polls:
                polled[(g, topic, p)] = max(polled[(g, topic, p)], o)
        groups = {(m.group, m.topic) for m in members}
        behind = [(g, k) for g, topic in groups for k in last_ack
                  if k[0] == topic and polled[(g, *k)] < last_ack[k]]
        if not behind:
            return
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
