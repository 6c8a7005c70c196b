"""Cluster-mode tests: several `shoal agent`s on one etcd and one MinIO (see run.sh).

    suite.py --shoal BIN --minio BIN [--etcd BIN] [--seconds N] [--selftest-sqlite] [TEST ...]

TEST is a number or name (1 basic, 2 agent-kill, 3 store-restart, 4 agent-groups,
5 zones, 6 chunk-cache); default all. Each check prints `ok:` or `FAILED:`; each test prints its figures;
the last line is `cluster: N passed, M failed` (exit status 1 on any failure).
--selftest-sqlite runs tests 1-3 on ONE agent with SQLite metadata and no cluster flags:
a check of this harness with a binary that has no etcd backend, not a test of Shoal's
cluster mode.
"""

import argparse
import os
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cluster import DEPARTED_GRACE, Cluster, Failed, Servers, Stop, run  # noqa: E402
import workload as w  # noqa: E402

# Seconds for a SIGKILLed agent to leave Metadata (lease ~10 s, then the departed-agent
# grace, + margin).
LEASE_SLACK = 30 + DEPARTED_GRACE


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []
        self.test = None
        self.test_failed = False
        self.figures = []

    def begin(self, test):
        self.test = test
        self.test_failed = False
        print(f"\n==> test {test}", flush=True)

    def check(self, ok, what):
        if ok:
            self.passed += 1
            print(f"  ok: {what}", flush=True)
        else:
            self.failed += 1
            self.test_failed = True
            self.failures.append(f"[{self.test}] {what}")
            print(f"  FAILED: {what}", flush=True)
        return ok

    def info(self, text):
        print(f"  {text}", flush=True)

    def figure(self, text):
        self.figures.append(f"{self.test}: {text}")
        print(f"  figures: {text}", flush=True)


# ------------------------------------------------------------------ shared steps

def check_brokers(ck, cl, agents, want, client_id="cluster-meta", what=None, timeout=8):
    want_addrs = sorted(a.address for a in want)
    for i, a in enumerate(agents):
        # Only the first may need the long wait (registrations arriving).
        ok, took, seen = w.wait_brokers(a.address, want_addrs, client_id,
                                        timeout if i == 0 else min(timeout, 8))
        ck.check(ok, (what or f"Metadata from {a.name} (client.id {client_id!r}) lists exactly "
                      f"{[x.name for x in want]}") + ("" if ok else f"; saw {seen}"))


def create_topic(ck, cl, topic, partitions, via, everyone):
    try:
        w.create_topic(via.address, topic, partitions)
        ck.check(True, f"created topic {topic} ({partitions} partitions) through {via.name}")
    except Exception as exc:
        ck.check(False, f"create topic {topic} through {via.name}: {exc}")
        raise Failed("no topic, nothing further to test")
    problem = w.wait_topic([a.address for a in everyone], topic, partitions)
    ck.check(problem is None, f"every agent's Metadata shows {topic} with {partitions} led "
                              f"partitions" + (f" ({problem})" if problem else ""))


def stop_agents(ck, cl, what="agents"):
    live = cl.live()
    if not live:
        return
    results = cl.stop(timeout=20)
    bad = {n: r for n, r in results.items() if r[0] != 0}
    slow = max((r[1] for r in results.values()), default=0)
    ck.check(not bad, f"SIGTERM: {len(results)} {what} exit 0 (slowest {slow:.1f}s)"
                      + (f"; not: {bad} (None = needed SIGKILL after 20s)" if bad else ""))


def no_panics(ck, cl):
    bad = [a.name for a in cl.agents if "panicked" in a.log_text()]
    ck.check(not bad, "no panic in any agent log" + (f": {bad}" if bad else ""))


def wait_until(pred, timeout, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def stream(ck, cl, topic, partitions, producer_agents, member_agents, per_producer, rate=None,
           during=None, consume_timeout=120, tag=None, client_ids=None, producer_ids=None,
           read_client_id="cluster-read-all"):
    """Idempotent producers (one per producer_agents entry, bootstrapped there) and a
    consumer group (one member per member_agents entry) running together; `during(ctx)`
    runs in the main thread meanwhile (kills, restarts). Then the common checks. Returns
    the context (ledger, group run, figures)."""
    abort = threading.Event()
    ledger = w.Ledger()
    group = f"{topic}-group"
    grun = w.GroupRun(group, topic, [a.address for a in member_agents], abort,
                      name_prefix=f"{topic}-member", client_ids=client_ids)
    producers = [w.ProducerThread(producer_ids[i] if producer_ids else f"{topic}-producer{i}",
                                  a.address, topic, per_producer, ledger, abort, rate=rate,
                                  tag=tag or topic)
                 for i, a in enumerate(producer_agents)]
    total = per_producer * len(producers)
    ctx = {"ledger": ledger, "group": grun, "producers": producers, "abort": abort,
           "total": total, "group_id": group}
    t0 = time.time()
    try:
        grun.start()
        for p in producers:
            p.start()
        if during:
            during(ctx)
        for p in producers:
            p.join(max(5, 200 - (time.time() - t0)))
        produced_in = max((p.finished_at or time.time()) for p in producers) - t0
        stuck = [p.name for p in producers if p.is_alive()]
        ck.check(not stuck, f"producers finished" + (f"; still running: {stuck}" if stuck else ""))
        errs = [f"{p.name}: {p.exception!r}" for p in producers if p.exception]
        ck.check(not errs, "no producer raised" + (f": {errs}" if errs else ""))
        sent = sum(p.sent for p in producers)
        acked = ledger.count()
        ck.check(sent == total and acked == total and not ledger.failed,
                 f"{total} records sent, {acked} acknowledged, {len(ledger.failed)} failed "
                 f"deliveries" + (f", e.g. {list(ledger.failed.values())[:3]}" if ledger.failed else ""))
        ck.check(not ledger.fatal, "no fatal (idempotence) producer error"
                 + (f": {ledger.fatal[:3]}" if ledger.fatal else ""))
        ck.check(not ledger.double_acks, "no offset or value acknowledged twice"
                 + (f": {ledger.double_acks[:3]}" if ledger.double_acks else ""))
        viol = ledger.order_violations()
        ck.check(not viol, "each producer's records got increasing offsets per partition "
                           f"(produce order kept)" + (f": {w.sample(viol)}" if viol else ""))

        left = grun.wait_consumed(ledger, consume_timeout, lambda: True)
        consumed_in = time.time() - t0
        ck.check(left == 0, f"the group consumed every acknowledged record ({left} missing "
                            f"after {consume_timeout}s)")
        # Committed offsets reach the end offsets (members commit every 0.5 s).
        # Offsets and the read-back go through the consumers' side (test 4: a reader; test
        # 5: with the consumers' zone), so they do not show up as fetches elsewhere.
        live = [a for a in member_agents if a.alive()] or cl.live() or member_agents
        via = live[0].address
        seen = {}

        def committed_at_end():
            try:
                seen["c"], seen["e"] = w.committed_and_ends(via, group, topic, partitions)
            except Exception as exc:
                seen["c"], seen["e"] = f"error {exc}", None
                return False
            return seen["c"] == seen["e"]
        ok = wait_until(committed_at_end, 45, 1.0)
        ck.check(ok, f"the group's committed offsets equal the end offsets "
                     f"{seen.get('e')}" + ("" if ok else f"; committed {seen.get('c')}"))
        stuck = grun.stop()
        ck.check(not stuck, "group members committed and closed" + (f"; stuck: {stuck}" if stuck else ""))
        errs = [f"{m.name}: {m.exception!r}" for m in grun.members if m.exception]
        fatal = [e for e in grun.errors if "fatal" in e]
        ck.check(not errs and not fatal, "no consumer raised or hit a fatal error"
                 + (f": {errs + fatal[:3]}" if errs or fatal else ""))
        if len(grun.errors) > len(fatal):
            ck.info(f"consumer errors reported (transient): {w.sample([e for e in grun.errors if e not in fatal])}")

        # What the group consumed against what was acknowledged.
        with grun.lock:
            consumed = dict(grun.seen)
        cmp = w.compare(consumed, ledger)
        ck.check(not cmp["wrong"] and not grun.inconsistent,
                 "every consumed record has the acknowledged value at its partition/offset"
                 + (f": wrong {w.sample(cmp['wrong'])}, inconsistent {w.sample(grun.inconsistent)}"
                    if cmp["wrong"] or grun.inconsistent else ""))
        ck.check(not cmp["duplicate"] and not cmp["unknown"],
                 "no record consumed that was not acknowledged (no duplicate writes)"
                 + (f": duplicates {w.sample(cmp['duplicate'])}, unknown {w.sample(cmp['unknown'])}"
                    if cmp["duplicate"] or cmp["unknown"] else ""))
        order, resume, runs = grun.order_and_resume()
        ck.check(not order, f"per-partition order intact in each of {runs} assignments "
                            f"(consecutive offsets)" + (f": {w.sample(order)}" if order else ""))
        ck.check(not resume, "each newly assigned partition resumed at or after its last "
                             "completed commit" + (f": {w.sample(resume)}" if resume else ""))

        # The ground truth: the whole topic read back without a group.
        got, highs, problems = w.read_all(via, topic, partitions, client_id=read_client_id)
        cmp = w.compare(got, ledger)
        ck.check(not problems and not cmp["missing"] and not cmp["wrong"],
                 f"read-back of the whole topic ({len(got)} records) holds every acknowledged "
                 f"record at its offset" + (f": problems {problems[:3]}, missing "
                                            f"{w.sample(cmp['missing'])}, wrong {w.sample(cmp['wrong'])}"
                                            if problems or cmp["missing"] or cmp["wrong"] else ""))
        ck.check(not cmp["duplicate"] and not cmp["unknown"] and len(got) == sum(highs.values()),
                 f"the log holds nothing else (high watermarks sum to {sum(highs.values())})"
                 + (f": duplicates {w.sample(cmp['duplicate'])}, unknown {w.sample(cmp['unknown'])}"
                    if cmp["duplicate"] or cmp["unknown"] else ""))
        if cmp["unacked"]:
            ck.info(f"records present whose delivery failed: {w.sample(cmp['unacked'])}")
        ck.figure(f"{total} records by {len(producers)} producers"
                  f"{f' at {rate}/s each' if rate else ''}: {acked} acknowledged after "
                  f"{produced_in:.1f}s, {'all' if left == 0 else f'all but {left}'} consumed by "
                  f"{len(grun.members)} members after {consumed_in:.1f}s; "
                  f"{grun.redelivered()} redelivered, {runs} assignments, "
                  f"{sum(len(v) for v in grun.commits.values())} partition commits "
                  f"({grun.commit_errors} failed{': ' if grun.commit_errors else ''}"
                  f"{', '.join(f'{k} x{v}' for k, v in sorted(grun.commit_error_kinds.items()))})")
        ctx["read_back"] = got
        return ctx
    except BaseException:
        ctx["failed"] = True
        raise
    finally:
        try:
            grun.dump(os.path.join(cl.workdir, f"group-{topic}.json"))
        except Exception as exc:
            ck.info(f"(could not write the group's history: {exc})")
        aborting = not abort.is_set() and any(t.is_alive() for t in producers + grun.members)
        abort.set()
        for t in producers + grun.members:
            t.join(2 if aborting else 10)


def wait_acked(ctx, fraction, timeout=90):
    want = int(ctx["total"] * fraction)
    return wait_until(lambda: ctx["ledger"].count() >= want, timeout)


def kill_and_watch(ck, cl, victim, what):
    """SIGKILL `victim`; with other agents alive, check Metadata stops listing it (lease
    expiry). Alone (selftest): restart it after 2 s instead."""
    ck.info(f"{time.strftime('%H:%M:%S')} kill -9 {victim.name} ({what})")
    victim.kill9()
    others = cl.live()
    if not others:
        time.sleep(2)
        victim.start()
        ck.info(f"{victim.name} was the only agent: restarted it")
        return
    ok, took, seen = w.wait_brokers(others[0].address, [a.address for a in others],
                                    timeout=LEASE_SLACK)
    ck.check(ok, f"Metadata drops the killed {victim.name} within {LEASE_SLACK}s "
                 f"({took:.1f}s)" + ("" if ok else f"; still lists {seen}"))
    return took


# ------------------------------------------------------------------ tests

def test_basic(ck, servers, opts):
    """Three agents: producers and a group spread over them; everything arrives."""
    cl = Cluster(servers, "t1-basic")
    n = 1 if opts.selftest else 3
    agents = [cl.add_agent() for _ in range(n)]
    cl.start_all()
    ck.check(True, f"{n} agents started")
    check_brokers(ck, cl, agents, agents, timeout=30)
    topic, partitions = "basic", 6
    create_topic(ck, cl, topic, partitions, agents[0], agents)
    md = w.metadata(agents[0].address, topic=topic)
    leaders = w.leader_addresses(md, topic)
    # Every agent this client sees leads its share of the N partitions: at least one
    # (when N >= M) and at most ceil(N/M) + 1.
    seen = w.broker_addresses(md)
    led = {cl.by_address(b).name if cl.by_address(b) else b:
           sum(1 for v in leaders.values() if v == b) for b in seen}
    low = 1 if partitions >= len(seen) else 0
    high = -(-partitions // max(1, len(seen))) + 1
    ck.check(sum(led.values()) == partitions and all(low <= c <= high for c in led.values()),
             f"each of the {len(seen)} agents leads {low} to {high} of the {partitions} "
             f"partitions: {led}")
    ck.info(f"leaders: { {p: cl.by_address(v).name if cl.by_address(v) else v for p, v in sorted(leaders.items())} }")
    # Paced (about 7 s) so that the agents flush many objects while the group tails them.
    stream(ck, cl, topic, partitions, [agents[i % n] for i in range(3)],
           [agents[i % n] for i in range(3)], opts.records // 3, rate=opts.rate_basic)

    # The data went to MinIO under the prefix, the metadata to etcd under the prefix.
    keys = servers.minio.list_keys(cl.prefix)
    ck.check(len(keys) > 0, f"the bucket holds objects under {cl.prefix}/ ({len(keys)} keys)")
    if not opts.selftest:
        ekeys = servers.etcd.keys()
        mine = [k for k in ekeys if k.lstrip(b"/").startswith(cl.prefix.encode() + b"/")]
        known = tuple(c.prefix.encode() + b"/" for c in servers.clusters)
        outside = [k for k in ekeys if not k.lstrip(b"/").startswith(known)]
        ck.check(len(mine) > 0 and not outside,
                 f"etcd holds {len(mine)} keys under the prefix {cl.prefix} and none outside "
                 f"the tests' prefixes" + (f"; outside: {outside[:5]}" if outside else ""))
    per_agent = {a.name: int(a.metrics().get("shoal_produced_batches_total", -1)) for a in agents}
    ck.info(f"batches acknowledged per agent: {per_agent}")

    if n > 1:
        # Graceful stop of one agent: it deregisters at once (no lease wait).
        gone = agents[-1]
        rc, took = gone.term(20)
        ck.check(rc == 0, f"SIGTERM: {gone.name} exits 0 ({took:.1f}s)")
        quick = 5 + DEPARTED_GRACE
        ok, took, seen = w.wait_brokers(agents[0].address, [a.address for a in agents[:-1]],
                                        timeout=quick)
        ck.check(ok, f"after its SIGTERM, Metadata drops {gone.name} within {quick}s "
                     f"({took:.1f}s; deregistered, no lease wait, then the "
                     f"{DEPARTED_GRACE}s departed-agent grace)" + ("" if ok else f"; saw {seen}"))
    stop_agents(ck, cl)
    no_panics(ck, cl)
    return cl


def test_agent_kill(ck, servers, opts):
    """SIGKILL the group coordinator mid-stream, later a second agent."""
    cl = Cluster(servers, "t2-agent-kill")
    n = 1 if opts.selftest else 3
    agents = [cl.add_agent() for _ in range(n)]
    cl.start_all()
    check_brokers(ck, cl, agents[:1], agents, timeout=30)
    topic = "agentkill"
    create_topic(ck, cl, topic, 6, agents[0], agents)
    victims = []

    def during(ctx):
        ck.check(wait_acked(ctx, 0.25), "a quarter acknowledged before the first kill")
        coord = w.group_coordinator(agents[0].address, ctx["group_id"])
        first = cl.by_address(coord) if coord else None
        ck.info(f"group coordinator: {first.name if first else coord}")
        first = first or agents[0]
        victims.append(first)
        kill_and_watch(ck, cl, first, "the group's coordinator")
        if n > 1:
            live = cl.live()
            new = w.group_coordinator(live[0].address, ctx["group_id"])
            ck.check(new in [a.address for a in live],
                     f"the group has a live coordinator after the kill ({new})")
        ck.check(wait_acked(ctx, 0.6), "60% acknowledged before the second kill")
        second = [a for a in cl.live() if a is not first]
        second = second[0] if second else first
        victims.append(second)
        kill_and_watch(ck, cl, second, "a second agent")

    ctx = stream(ck, cl, topic, 6, [agents[i % n] for i in range(3)],
                 [agents[i % n] for i in range(3)], opts.records // 3, rate=opts.rate,
                 during=during)
    # The coordinator's death makes the members rejoin (DESIGN.md: NOT_COORDINATOR, find
    # the new one, rejoin): more assignments than the first round's one per partition.
    runs = len(ctx["group"].runs)
    ck.check(runs > 6, f"the group rebalanced after the kills ({runs} partition assignments "
                       f"for 6 partitions)")

    if n > 1:
        # Restart the killed agents: they register again and serve everything.
        for v in victims:
            if not v.alive():
                v.start()
        check_brokers(ck, cl, agents, agents, timeout=LEASE_SLACK)
        got, _, problems = w.read_all(victims[0].address, topic, 6)
        cmp = w.compare(got, ctx["ledger"])
        ck.check(not problems and not any(cmp[k] for k in ("missing", "wrong", "duplicate", "unknown")),
                 f"read-back through the restarted {victims[0].name}: every acknowledged record, "
                 f"nothing else" + ("" if not problems else f" ({problems[:3]})")
                 + "".join(f"; {k} {w.sample(v)}" for k, v in cmp.items() if v and k != "unacked"))
    stop_agents(ck, cl)
    no_panics(ck, cl)
    return cl


def test_store_restart(ck, servers, opts):
    """Restart etcd, then MinIO, mid-stream: producers ride through with retries."""
    cl = Cluster(servers, "t3-store-restart")
    n = 1 if opts.selftest else 3
    agents = [cl.add_agent() for _ in range(n)]
    cl.start_all()
    check_brokers(ck, cl, agents[:1], agents, timeout=30)
    topic = "storerestart"
    create_topic(ck, cl, topic, 6, agents[0], agents)
    stalls = {}

    def outage(ctx, server, name, fraction):
        ck.check(wait_acked(ctx, fraction), f"{int(fraction * 100)}% acknowledged before "
                                            f"the {name} restart")
        before = ctx["ledger"].count()
        ck.info(f"{time.strftime('%H:%M:%S')} kill -9 {name}; start it again after "
                f"{opts.outage}s on the same port and data directory")
        server.kill9()
        time.sleep(opts.outage)
        server.start(60)
        back = time.time()
        at_back = ctx["ledger"].count()
        # Acknowledgements must move on once the server is back (however many got through
        # before: each agent buffers a little while a flush waits).
        ok = wait_until(lambda: ctx["ledger"].count() >= at_back + 300, 45)
        stalls[name] = time.time() - back
        ck.check(ok, f"acknowledgements continue after the {name} restart ({at_back - before} "
                     f"during the {opts.outage:.0f}s outage, then "
                     f"{ctx['ledger'].count() - at_back} in {stalls[name]:.1f}s)")
        dead = [a.name for a in agents if not a.alive()]
        ck.check(not dead, f"no agent exited during the {name} outage" + (f": {dead}" if dead else ""))

    def during(ctx):
        outage(ctx, servers.etcd, "etcd", 0.2)
        outage(ctx, servers.minio, "MinIO", 0.55)

    stream(ck, cl, topic, 6, [agents[i % n] for i in range(3)], [agents[i % n] for i in range(3)],
           opts.records // 3, rate=opts.rate, during=during)
    check_brokers(ck, cl, agents[:1], agents, timeout=LEASE_SLACK,
                  what="after both restarts Metadata still lists every agent")
    ck.figure("300 more acknowledgements " + ", ".join(f"{v:.1f}s after {k} was back"
                                                      for k, v in stalls.items()))
    stop_agents(ck, cl)
    no_panics(ck, cl)
    return cl


def test_agent_groups(ck, servers, opts):
    """Writers (produce,jobs) and readers (fetch) share etcd and the bucket."""
    cl = Cluster(servers, "t4-agent-groups")
    # Short job intervals, so the writers also compact etcd's history during the test.
    writers = [cl.add_agent(f"writer{i}", group="writers", roles="produce,jobs",
                            extra=["--retention-check-interval", "2s",
                                   "--metadata-history", "1s"]) for i in range(2)]
    readers = [cl.add_agent(f"reader{i}", group="readers", roles="fetch") for i in range(2)]
    cl.start_all()
    check_brokers(ck, cl, writers, writers, timeout=30)
    check_brokers(ck, cl, readers, readers)
    topic = "agentgroups"
    create_topic(ck, cl, topic, 6, writers[0], writers + readers)
    for side, names in ((writers, "writers"), (readers, "readers")):
        md = w.metadata(side[0].address, topic=topic)
        lead = set(w.leader_addresses(md, topic).values())
        ck.check(lead <= {a.address for a in side},
                 f"partition leaders in Metadata from {side[0].name} are all {names}: "
                 f"{sorted(cl.by_address(x).name if cl.by_address(x) else x for x in lead)}")
    ctx = {}

    def during(c):
        ctx.update(c)
    stream(ck, cl, topic, 6, writers, readers, opts.records // 4, during=during)
    coord = w.group_coordinator(readers[0].address, ctx["group_id"])
    ck.check(coord in [a.address for a in readers],
             f"the readers' group coordinator is a reader ({cl.by_address(coord).name if cl.by_address(coord) else coord})")
    m = {a.name: a.metrics() for a in writers + readers}
    prod = {k: int(v.get("shoal_produced_batches_total", -1)) for k, v in m.items()}
    fetched = {k: int(v.get("shoal_fetched_bytes_total", -1)) for k, v in m.items()}
    ck.check(sum(prod[a.name] for a in writers) > 0 and all(prod[a.name] == 0 for a in readers),
             f"produce went to writers only: batches {prod}")
    ck.check(all(fetched[a.name] == 0 for a in writers) and sum(fetched[a.name] for a in readers) > 0,
             f"fetches went to readers only: bytes {fetched}")
    # Cross-agent wakeups: a consumer on the readers waits at the end of the log, then
    # one record per partition goes through the writers. Readers commit nothing, so
    # every wakeup of their fetches comes from etcd's watch reporting the writers'
    # commits (per partition: the other partitions' reports leave a fetch waiting).
    before = {a.name: a.metrics() for a in readers}
    got = w.wake_probe(readers[0].address, writers[0].address, topic, 6)
    after = {a.name: a.metrics() for a in readers}

    def woken(result):
        key = f'shoal_fetch_wakeups_total{{result="{result}"}}'
        return {a.name: int(after[a.name].get(key, -1) - before[a.name].get(key, 0)) for a in readers}
    ck.check(got == 6, f"a consumer waiting on the readers got all 6 records produced through "
             f"the writers (got {got})")
    ck.check(sum(woken("read").values()) > 0,
             f"the writers' commits woke the readers' waiting fetches: read again {woken('read')}, "
             f"kept waiting {woken('skipped')}")
    compactions = {a.name: a.log_text().count("compacted the metadata store's history")
                   for a in writers}
    ck.check(sum(compactions.values()) > 0,
             f"etcd's history was compacted by the writer holding the job, and everything "
             f"above still worked across it: compactions {compactions}")
    stop_agents(ck, cl)
    no_panics(ck, cl)
    return cl


def test_zones(ck, servers, opts):
    """Agents in zones a, a, b; a client's shoal_az picks its zone's agents."""
    cl = Cluster(servers, "t5-zones")
    a0 = cl.add_agent("a0", az="a")
    a1 = cl.add_agent("a1", az="a")
    b0 = cl.add_agent("b0", az="b")
    cl.start_all()
    everyone = [a0, a1, b0]
    check_brokers(ck, cl, everyone, everyone, client_id="app", timeout=30)
    check_brokers(ck, cl, [a0, b0], [b0], client_id="app,shoal_az=b")
    check_brokers(ck, cl, [b0, a1], [a0, a1], client_id="app,shoal_az=a")
    check_brokers(ck, cl, [a0], everyone, client_id="app,shoal_az=c",
                  what="a zone with no agents (shoal_az=c) falls back to all agents")
    topic = "zones"
    create_topic(ck, cl, topic, 12, a0, everyone)
    md = w.metadata(b0.address, "app,shoal_az=a", topic=topic)
    lead = w.leader_addresses(md, topic)
    names = sorted({cl.by_address(x).name if cl.by_address(x) else str(x) for x in lead.values()})
    ck.check(names == ["a0", "a1"], f"for a zone-a client the 12 leaders are spread over "
                                    f"both zone-a agents and nothing else: {names}")
    md = w.metadata(a0.address, "app,shoal_az=b", topic=topic)
    lead = w.leader_addresses(md, topic)
    ck.check(set(lead.values()) == {b0.address}, "for a zone-b client every leader is b0")

    # A zone-b producer and consumer bootstrapped to zone-a agents end up on b0 only.
    before = {a.name: a.metrics() for a in everyone}
    stream(ck, cl, topic, 12, [a0], [a1], opts.records // 10,
           client_ids=["zoneb-consumer,shoal_az=b"], producer_ids=["zoneb-producer,shoal_az=b"],
           read_client_id="zoneb-reader,shoal_az=b")
    after = {a.name: a.metrics() for a in everyone}

    def delta(name, metric):
        return int(after[name].get(metric, -1) - before[name].get(metric, 0))
    prod = {a.name: delta(a.name, "shoal_produced_batches_total") for a in everyone}
    fetched = {a.name: delta(a.name, "shoal_fetched_bytes_total") for a in everyone}
    ck.check(prod["b0"] > 0 and prod["a0"] == 0 and prod["a1"] == 0,
             f"the zone-b producer's batches all went to b0: {prod}")
    ck.check(fetched["b0"] > 0 and fetched["a0"] == 0 and fetched["a1"] == 0,
             f"the zone-b consumer fetched from b0 only (bytes): {fetched}")
    stop_agents(ck, cl)
    no_panics(ck, cl)
    return cl


CHUNK_BYTES = 4 * 1024 * 1024  # the agents' chunk size (AgentConfig::chunk_bytes, no flag)
CACHE_METRICS = {
    "peer_hit": 'shoal_peer_chunks_total{result="peer_hit"}',
    "fallback": 'shoal_peer_chunks_total{result="fallback"}',
    "served": 'shoal_peer_chunks_total{result="served"}',
    "get": 'shoal_object_store_requests_total{op="get"}',
    "hedged": "shoal_object_hedged_gets_total",
    "hit": 'shoal_chunk_cache_requests_total{result="hit"}',
    "miss": 'shoal_chunk_cache_requests_total{result="miss"}',
    "fetched": "shoal_fetched_bytes_total",
}


def cache_counts(agents, before=None):
    """{agent name: {short name: value}} of CACHE_METRICS, minus `before` (same shape)."""
    out = {}
    for a in agents:
        m = a.metrics()
        lacking = [v for v in CACHE_METRICS.values() if v not in m]
        if lacking:
            raise Failed(f"/metrics of {a.name} lacks {lacking}" if m else f"no /metrics from {a.name}")
        out[a.name] = {k: int(m[v]) - (before[a.name][k] if before else 0)
                       for k, v in CACHE_METRICS.items()}
    return out


def summed(counts, key):
    return sum(c[key] for c in counts.values())


def per_agent(counts, key):
    return {name: c[key] for name, c in counts.items()}


def check_read_back(ck, got, highs, problems, ledger, what):
    cmp = w.compare(got, ledger)
    bad = {k: v for k, v in cmp.items() if v and k != "unacked"}
    ck.check(not problems and not bad and len(got) == sum(highs.values()),
             f"{what}: {len(got)} records, every acknowledged one with its value at its "
             f"offset, nothing else (high watermarks sum to {sum(highs.values())})"
             + (f"; problems {problems[:3]}" if problems else "")
             + "".join(f"; {k} {w.sample(v)}" for k, v in bad.items()))


def test_chunk_cache(ck, servers, opts):
    """Cold reads of objects holding every partition by three agents: each chunk comes
    from the bucket about once (its owner's GET), the others get it from the owner."""
    cl = Cluster(servers, "t6-chunk-cache")
    # No compaction: the objects listed below stay the ones read back. Flushes start at
    # 1 MiB (instead of 8): objects of one chunk each, even if the writer falls behind.
    agents = [cl.add_agent(extra=["--compaction-target-bytes", "0", "--batch-max-bytes", "1MiB"])
              for _ in range(3)]
    topic, partitions = "chunkcache", 6
    total = max(600, opts.records * 2 // 3) // 2 * 2
    # Produced through one agent alone, which then leads every partition, so that every
    # flush object holds batches of every partition. (With three agents up, producers
    # send each partition to its leader: each agent's objects would hold only the
    # partitions it leads, a cold read would need each object on one agent only, and
    # there would be nothing to share.)
    writer = agents[0]
    writer.start()
    check_brokers(ck, cl, [writer], [writer], timeout=30)
    create_topic(ck, cl, topic, partitions, writer, [writer])
    ledger, abort = w.Ledger(), threading.Event()
    # Paced (5 s), so that the 50 ms flushes make many small objects: about 200 KiB,
    # one chunk each.
    producers = [w.ProducerThread(f"{topic}-producer{i}", writer.address, topic, total // 2,
                                  ledger, abort, tag=topic, pad=900, rate=total // 10)
                 for i in range(2)]
    t0 = time.time()
    for p in producers:
        p.start()
    for p in producers:
        p.join(max(5, 150 - (time.time() - t0)))
    produced_in = time.time() - t0
    stuck = [p.name for p in producers if p.is_alive()]
    if stuck:
        abort.set()
    errs = [f"{p.name}: {p.exception!r}" for p in producers if p.exception]
    acked = ledger.count()
    ck.check(not stuck and not errs and acked == total and not ledger.failed
             and not ledger.fatal and not ledger.double_acks,
             f"{acked} of {total} records (~1 KiB each) acknowledged through {writer.name} "
             f"alone in {produced_in:.1f}s" + (f"; stuck {stuck}" if stuck else "")
             + (f"; raised {errs}" if errs else "")
             + (f"; failed {w.sample(ledger.failed.values())}" if ledger.failed else "")
             + (f"; fatal {ledger.fatal[:3]}" if ledger.fatal else "")
             + (f"; acknowledged twice {ledger.double_acks[:3]}" if ledger.double_acks else ""))
    if not acked:
        raise Failed("nothing acknowledged, nothing further to test")
    stop_agents(ck, cl, "agent (the writer)")

    objects = servers.minio.list_objects(f"{cl.prefix}/data")
    sizes = [size for _, size in objects]
    chunks = sum(max(1, -(-size // CHUNK_BYTES)) for size in sizes)
    ck.check(len(objects) > 0,
             f"the bucket holds {len(objects)} data objects under {cl.prefix}/data/ "
             f"({sum(sizes) / 2**20:.1f} MiB, largest {max(sizes or [0]) / 2**20:.2f} MiB): "
             f"{chunks} chunks of 4 MiB")
    if not objects:
        raise Failed("no objects, nothing further to test")

    # Phase 1: all three start with empty caches; a group-less consumer fetches each
    # partition from its leader, so every leader needs (a chunk of) every object.
    cl.start_all()
    check_brokers(ck, cl, agents, agents, timeout=30)
    md = w.metadata(agents[0].address, topic=topic)
    leaders = w.leader_addresses(md, topic)
    name = {a.address: a.name for a in agents}
    lead = {p: name.get(v, v) for p, v in sorted(leaders.items())}
    ck.info(f"leaders: {lead}")
    before = cache_counts(agents)
    t1 = time.time()
    got, highs, problems = w.read_all(agents[1].address, topic, partitions,
                                      client_id=f"{topic}-read-cold")
    read_in = time.time() - t1
    d = cache_counts(agents, before)
    check_read_back(ck, got, highs, problems, ledger,
                    f"cold read-back through {agents[1].name} ({read_in:.1f}s)")
    readers = sorted(n for n, c in d.items() if c["fetched"] > 0)
    ck.info(f"agents that served fetches: {readers} (leaders {sorted(set(lead.values()))})")
    if len(readers) < 2:
        ck.info("only one agent served fetches: the GET bound below says little this time")
    peer_hit, served, fallback = (summed(d, k) for k in ("peer_hit", "served", "fallback"))
    gets, hedged = summed(d, "get"), summed(d, "hedged")
    ck.check(peer_hit > 0, f"chunks got from their owner agent: {peer_hit} "
                           f"{per_agent(d, 'peer_hit')}")
    ck.check(served >= peer_hit, f"chunks served to peers ({served} {per_agent(d, 'served')}) "
                                 f">= chunks got from peers ({peer_hit})")
    ck.check(fallback == 0, f"no owner failed (fallback GETs: {fallback} "
                            f"{per_agent(d, 'fallback')})")
    # Without the peer cache every agent serving fetches GETs every chunk it needs
    # (here: each chunk, by each of them); with it each chunk is GET once, by its owner.
    # Hedges (a second GET for one slower than --hedge-after) are another matter: left out.
    bound = int(1.5 * chunks)
    ck.check(gets - hedged <= bound,
             f"object-store GETs during the read-back: {gets} ({hedged} hedges) "
             f"{per_agent(d, 'get')} for {chunks} chunks: at most 1.5 x chunks = {bound} "
             f"without hedges (without the peer cache: ~{len(readers)} x {chunks} = "
             f"{len(readers) * chunks})")
    ck.figure(f"{total} records, {sum(sizes) / 2**20:.1f} MiB in {len(objects)} objects "
              f"({chunks} chunks); cold read-back by {len(readers)} leaders in {read_in:.1f}s: "
              f"{gets} GETs ({hedged} hedged; ~{len(readers) * chunks} without the peer cache), "
              f"{peer_hit} peer hits, {served} served, {fallback} fallbacks, cache "
              f"{summed(d, 'hit')} hits / {summed(d, 'miss')} misses")

    # Phase 2: kill -9 the leader of partition 0; its registration lives on until its
    # lease expires (~10 s), so the others still pick it as owner of a third of the
    # chunks. They are restarted at once (empty caches again, else they would hold every
    # chunk already and ask nobody), then everything is read back: an owner that does not
    # answer costs a fallback GET, never a failed read.
    victim = cl.by_address(leaders.get(0)) or agents[2]
    survivors = [a for a in agents if a is not victim]
    t_kill = time.time()
    ck.info(f"{time.strftime('%H:%M:%S')} kill -9 {victim.name}; SIGTERM and restart "
            f"{[a.name for a in survivors]}")
    victim.kill9()
    stop_agents(ck, cl, "surviving agents")
    cl.start_all(only=survivors)
    listed = None
    try:
        listed = victim.address in w.broker_addresses(w.metadata(survivors[0].address))
    except Exception as exc:
        ck.info(f"(Metadata after the restart: {exc})")
    ck.info(f"survivors back {time.time() - t_kill:.1f}s after the kill; Metadata "
            f"{'still lists' if listed else 'no longer lists'} {victim.name}")
    before = cache_counts(survivors)
    t2 = time.time()
    # With the high watermarks of the first read: asking for them would wait for the
    # dead leader of partition 0 (until its lease expires) before fetching anything.
    got, highs, problems = w.read_all(survivors[0].address, topic, partitions,
                                      client_id=f"{topic}-read-after-kill",
                                      extra_conf={"topic.metadata.refresh.interval.ms": 1000},
                                      known_highs=highs)
    read2_in = time.time() - t2
    d = cache_counts(survivors, before)
    check_read_back(ck, got, highs, problems, ledger,
                    f"read-back with {victim.name} dead ({read2_in:.1f}s, started "
                    f"{t2 - t_kill:.1f}s after the kill)")
    ck.figure(f"after kill -9 of {victim.name} (read from {t2 - t_kill:.1f}s to "
              f"{time.time() - t_kill:.1f}s after the kill): {summed(d, 'fallback')} fallbacks "
              f"{per_agent(d, 'fallback')}, {summed(d, 'peer_hit')} peer hits, "
              f"{summed(d, 'get')} GETs for {chunks} chunks")
    stop_agents(ck, cl)
    no_panics(ck, cl)
    return cl


TESTS = [
    ("1", "basic", test_basic),
    ("2", "agent-kill", test_agent_kill),
    ("3", "store-restart", test_store_restart),
    ("4", "agent-groups", test_agent_groups),
    ("5", "zones", test_zones),
    ("6", "chunk-cache", test_chunk_cache),
]


def preflight(ck, binary):
    out = subprocess.run([binary, "agent", "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=30).stdout.decode(errors="replace")
    missing = [f for f in ("--az", "--agent-group", "--roles") if f not in out]
    return ck.check(not missing, f"`shoal agent` has the cluster flags"
                                 + (f"; missing {missing} in {binary}" if missing else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--minio", required=True)
    ap.add_argument("--etcd", default="etcd")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("CLUSTER_SECONDS", 420)))
    ap.add_argument("--records", type=int, default=int(os.environ.get("CLUSTER_RECORDS", 30000)),
                    help="records per test for tests 1-3 (4: /4 per producer, 5: /10, "
                         "6: 2/3 of ~1 KiB each)")
    ap.add_argument("--rate", type=int, default=int(os.environ.get("CLUSTER_RATE", 350)),
                    help="records/s per producer in tests 2 and 3 (keeps the stream going "
                         "while servers are killed)")
    ap.add_argument("--rate-basic", type=int,
                    default=int(os.environ.get("CLUSTER_RATE_BASIC", 1500)),
                    help="records/s per producer in test 1")
    ap.add_argument("--outage", type=float, default=float(os.environ.get("CLUSTER_OUTAGE", 3)))
    ap.add_argument("--workdir", help="for logs and data (default: a new temporary directory)")
    ap.add_argument("--selftest-sqlite", dest="selftest", action="store_true")
    ap.add_argument("--counts", help="also write 'PASSED FAILED' (the last line's numbers) "
                                     "to this file (run.sh adds the client suites to them)")
    ap.add_argument("tests", nargs="*")
    opts = ap.parse_args()
    chosen = [t for t in TESTS if not opts.tests or t[0] in opts.tests or t[1] in opts.tests]
    if opts.selftest:
        chosen = [t for t in chosen if t[0] in ("1", "2", "3")]
    ck = Checks()
    servers = Servers(os.path.abspath(opts.shoal), opts.minio, opts.etcd,
                      metadata="sqlite" if opts.selftest else "etcd",
                      keep=os.environ.get("CLUSTER_KEEP") == "1", workdir=opts.workdir)
    w.client_logger(servers.client_log)
    started = time.time()

    def body():
        ck.begin("setup")
        took = servers.start()
        ck.check(True, f"etcd on {servers.etcd.endpoint} and MinIO on {servers.minio.endpoint} "
                       f"(bucket {servers.minio.bucket}) up in {took:.1f}s")
        if opts.selftest:
            ck.info("SELFTEST: one agent per test on SQLite metadata, no cluster flags; "
                    "this checks the harness, not cluster mode")
        elif not preflight(ck, opts.shoal):
            return
        for num, name, fn in chosen:
            ck.begin(f"{num} {name}")
            t0 = time.time()
            cl = None
            try:
                fn(ck, servers, opts)
            except Stop as exc:
                ck.check(False, f"{exc}")
                raise
            except Failed as exc:
                ck.check(False, f"{exc}")
                if "no etcd metadata backend" in str(exc) or "lacks a cluster flag" in str(exc):
                    ck.info("the remaining tests need the same: stopping here")
                    return
            except Exception as exc:
                ck.check(False, f"unexpected error: {exc!r}")
                traceback.print_exc()
            finally:
                for c in servers.clusters:
                    if c.prefix.startswith(f"t{num}-"):
                        cl = c
                if ck.test_failed:
                    print("\n" + (servers.log_tails(40) if cl is None else
                                  cl.log_tails(40) + "\n" + servers.log_tails(20, agents=False)),
                          flush=True)
                if cl is not None:
                    cl.kill_all()  # whatever a failed test left running
                ck.figure(f"took {time.time() - t0:.1f}s")

    try:
        body()
    except (Failed, Stop) as exc:
        if not any(str(exc) in f for f in ck.failures):
            ck.check(False, str(exc))
            print(servers.log_tails(30), flush=True)
    finally:
        print(f"\n==> summary ({time.time() - started:.0f}s)")
        for f in ck.figures:
            print(f"  {f}")
        if ck.failures:
            print("failed checks:")
            for f in ck.failures:
                print(f"  {f}")
        print(f"cluster: {ck.passed} passed, {ck.failed} failed", flush=True)
        if opts.counts:
            with open(opts.counts, "w") as f:
                f.write(f"{ck.passed} {ck.failed}\n")
    return 0 if ck.failed == 0 else 1


if __name__ == "__main__":
    opts_seconds = int(os.environ.get("CLUSTER_SECONDS", 420))
    for i, a in enumerate(sys.argv):
        if a == "--seconds" and i + 1 < len(sys.argv):
            opts_seconds = int(sys.argv[i + 1])
    run(main, opts_seconds)
