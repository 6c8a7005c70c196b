"""Cluster-mode benchmark driver (issue 5); bench/cluster.sh builds and starts it.

    cluster.py --shoal BIN --bench BIN --minio BIN [--etcd BIN] [--records N]
               [--agents "1 2 3"] [--timeouts "50ms 250ms"] [--wide-in-flight 20] [--scale-out 3]
               [--seconds LIMIT] [--workdir DIR] [--keep]

Uses the process harness of tests/cluster/cluster.py (one etcd and one MinIO on loopback,
children with a parent-death signal, everything in one temporary directory). For each agent
count N and batch timeout T, with a fresh etcd prefix and bucket prefix `bench-nN-T`:

 1. start N agents `shoal agent --metadata etcd://…/bench-nN-T --object-store
    s3://shoal-cluster/bench-nN-T --batch-timeout T --metrics-listen … --node-id I
    --compaction-target-bytes 0` and wait until each lists all N in Metadata (node ids
    are pinned so a restarted agent leads the same partitions; compaction is off so the
    cold reads see the flush objects, not a merge in progress);
 2. produce: `shoal-bench --bootstrap AGENT1 --records R` (its producers, tailing consumer
    and catch-up read each connect to every partition leader); produce MB/s and latency,
    end-to-end latency; PUTs and GETs summed over every agent's /metrics, and how often
    the tailing consumer's waiting fetches were woken to read again or left waiting
    (`shoal_fetch_wakeups_total`: a commit of partitions they do not fetch);
 2b. the same once more into a second topic with `--max-in-flight 20` (4x the default
    window of bytes in flight; `--wide-in-flight`): shoal-bench is a closed loop, so with
    the default window its throughput is about window / latency;
 3. cold read, distributed cache on: SIGTERM every agent, start them again with the same
    arguments (empty chunk caches), read the whole topic with `shoal-bench --records 0
    --group-consumers 2` (a consumer group from the earliest offsets, fetching from the
    leaders); GETs and shoal_peer_chunks_total over every agent;
 4. cold read, distributed cache off (N > 1): the same with every agent in its own zone
    (`--az zI`): an agent only asks peers of its own zone, so this is the same read with
    no peer cache. GETs(off) - GETs(on) = GETs saved by the distributed cache;
 5. for N = 1 only, "scale-out read": two more agents join (node ids 2, 3) and the three
    read what the single agent wrote, cache on and off. Every object then holds
    partitions of every reading leader: the case the distributed cache is for.

The chunk count (objects listed in the bucket, each ceil(size / 4 MiB) chunks) is the
least number of GETs a cold read of everything can take. MB means 2^20 bytes of record
values, as in shoal-bench. Every row records the 1-minute load average (/proc/loadavg)
when it started. Nothing here asserts a timing; the exit status is non-zero only if a
step failed (a server did not start, shoal-bench exited non-zero or saw too few brokers).
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))

from cluster import Cluster, Failed, Servers, run  # noqa: E402

MIB = 1 << 20
CHUNK = 4 * MIB  # the agents' chunk size (crates/shoal-agent/src/config.rs)
PARTITIONS = 8
GROUP_CONSUMERS = 2
KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def log(text):
    print(f"[{time.strftime('%H:%M:%S')} load {load()}] {text}", flush=True)


# ------------------------------------------------------------------ agents and metrics

def counter(m, name, **labels):
    lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return m.get(f"{name}{{{lab}}}" if lab else name, 0.0)


COUNTERS = {
    "puts": ("shoal_object_store_requests_total", {"op": "put"}),
    "gets": ("shoal_object_store_requests_total", {"op": "get"}),
    "get_bytes": ("shoal_object_store_bytes_total", {"op": "get"}),
    "hedged": ("shoal_object_hedged_gets_total", {}),
    "cache_hit": ("shoal_chunk_cache_requests_total", {"result": "hit"}),
    "cache_miss": ("shoal_chunk_cache_requests_total", {"result": "miss"}),
    "peer_hit": ("shoal_peer_chunks_total", {"result": "peer_hit"}),
    "fallback": ("shoal_peer_chunks_total", {"result": "fallback"}),
    "served": ("shoal_peer_chunks_total", {"result": "served"}),
    "errors": ("shoal_object_store_errors_total", {}),
    "wake_read": ("shoal_fetch_wakeups_total", {"result": "read"}),
    "wake_skipped": ("shoal_fetch_wakeups_total", {"result": "skipped"}),
}


def scrape(agents):
    """{agent name: {figure: value}}; fails if an agent's page is unreachable."""
    out = {}
    for a in agents:
        m = a.metrics()
        if not m:
            raise Failed(f"no /metrics from {a.name} (port {a.metrics_port})")
        out[a.name] = {k: counter(m, name, **labels) for k, (name, labels) in COUNTERS.items()}
    return out


def delta(before, after):
    """Summed over agents: after - before (an agent absent before counts from 0)."""
    total = {k: 0.0 for k in COUNTERS}
    for name, figs in after.items():
        prev = before.get(name, {})
        for k, v in figs.items():
            total[k] += v - prev.get(k, 0.0)
    return total


def wait_metadata(agents, timeout=30):
    """Until Metadata from every agent lists exactly these agents (kcat -L); without kcat
    a fixed 2 s (shoal-bench's broker count is checked afterwards anyway)."""
    want = sorted(a.address for a in agents)
    if not KCAT:
        time.sleep(2)
        return
    deadline = time.time() + timeout
    for a in agents:
        seen = None
        while True:
            try:
                out = subprocess.run([KCAT, "-b", a.address, "-L", "-J", "-m", "5"],
                                     capture_output=True, timeout=15, text=True)
                brokers = json.loads(out.stdout).get("brokers", []) if out.returncode == 0 else []
                seen = sorted(b["name"] for b in brokers)
            except (subprocess.TimeoutExpired, ValueError) as exc:
                seen = f"error: {exc}"
            if seen == want:
                break
            if time.time() > deadline:
                raise Failed(f"Metadata from {a.name} lists {seen}, not {want}")
            time.sleep(0.3)


def leaders(agent, topic):
    """Distinct partition leaders of `topic` in Metadata from `agent` (kcat), or None."""
    if not KCAT:
        return None
    try:
        out = subprocess.run([KCAT, "-b", agent.address, "-L", "-J", "-t", topic, "-m", "5"],
                             capture_output=True, timeout=15, text=True)
        topics = json.loads(out.stdout).get("topics", [])
        return len({p["leader"] for t in topics for p in t.get("partitions", [])})
    except (subprocess.TimeoutExpired, ValueError, KeyError):
        return None


def restart(cl, agents, zones):
    """SIGTERM every live agent of `cl`, then start `agents` with `--az` from `zones`
    (None: no --az). Fresh processes, so empty chunk caches."""
    bad = {n: r for n, r in cl.stop(timeout=30).items() if r[0] != 0}
    if bad:
        raise Failed(f"agents did not stop cleanly (status, seconds): {bad}")
    for a, z in zip(agents, zones):
        a.az = z
    for a in agents:
        a.start(timeout=60)
    wait_metadata(agents)


def bucket_chunks(minio, prefix):
    """(objects, bytes, chunks) under s3://BUCKET/PREFIX/ (ListObjectsV2, paged)."""
    objects = size = chunks = 0
    token = None
    while True:
        q = "list-type=2&prefix=" + urllib_quote(prefix + "/")
        if token:
            q = "continuation-token=" + urllib_quote(token) + "&" + q
        xml = minio.s3(f"{minio.endpoint}/{minio.bucket}?{q}")
        for s in re.findall(r"<Size>(\d+)</Size>", xml):
            objects += 1
            size += int(s)
            chunks += math.ceil(int(s) / CHUNK)
        m = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", xml)
        if "<IsTruncated>true</IsTruncated>" not in xml or not m:
            return objects, size, chunks
        token = m.group(1)


def urllib_quote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="")


# ------------------------------------------------------------------ shoal-bench

def bench(args, workdir, label, bootstrap, topic, extra, n_agents):
    """Runs shoal-bench; returns its RESULT fields. Its whole report goes to LABEL.out."""
    cmd = [args.bench, "--bootstrap", bootstrap, "--topic", topic, "--partitions",
           str(PARTITIONS), "--record-size", str(args.record_size), "--label", label] + extra
    path = os.path.join(workdir, f"{label}.out")
    with open(path, "wb") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, timeout=600).returncode
    with open(path) as f:
        text = f.read()
    if rc != 0:
        raise Failed(f"shoal-bench {label} exited {rc}:\n{text[-3000:]}")
    m = re.search(r"on (\d+) broker\(s\)", text)
    if not m or int(m.group(1)) != n_agents:
        raise Failed(f"shoal-bench {label} saw {m.group(1) if m else '?'} brokers, not "
                     f"{n_agents}")
    line = [x for x in text.splitlines() if x.startswith("RESULT ")][-1]
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def cold_read(args, servers, cl, agents, zones, label, topic, mb):
    """Restart `agents` (zones as given), read the topic from the start; figures."""
    restart(cl, agents, zones)
    row = {"load": load(), "leaders": leaders(agents[0], topic)}
    before = scrape(agents)
    res = bench(args, servers.workdir, label, agents[0].address, topic,
                ["--records", "0", "--group-consumers", str(GROUP_CONSUMERS)], len(agents))
    d = delta(before, scrape(agents))
    row.update(d)
    row["mb_s"] = res["group_consume_mb_s"]
    row["gets_per_mb"] = d["gets"] / mb
    log(f"{label}: {row['leaders']} leader(s) of {len(agents)} agent(s); "
        f"{res['group_consume_mb_s']} MB/s; GETs {d['gets']:.0f} "
        f"({d['gets'] / mb:.3f}/MB, {d['hedged']:.0f} hedged), peer hits {d['peer_hit']:.0f}, "
        f"fallbacks {d['fallback']:.0f}, served {d['served']:.0f}, cache hit/miss "
        f"{d['cache_hit']:.0f}/{d['cache_miss']:.0f}")
    return row


def one_run(args, servers, n, t):
    prefix = f"bench-n{n}-{t}"
    topic = f"bench-n{n}-{t}"
    cl = Cluster(servers, prefix, batch_timeout=t)
    extra = ["--compaction-target-bytes", "0"]
    agents = [cl.add_agent(f"agent{i + 1}", extra=["--node-id", str(i + 1)] + extra)
              for i in range(n)]
    row = {"n": n, "t": t, "load": load()}
    log(f"== N={n} T={t}: starting {n} agent(s)")
    cl.start_all(timeout=60)
    wait_metadata(agents)
    mb = args.records * args.record_size / MIB

    before = scrape(agents)
    res = bench(args, servers.workdir, f"produce-n{n}-{t}", agents[0].address, topic,
                ["--records", str(args.records)], n)
    d = delta(before, scrape(agents))
    row.update(produce=res, puts=d["puts"], puts_per_mb=d["puts"] / mb,
               wake_read=d["wake_read"], wake_skipped=d["wake_skipped"],
               warm_gets=d["gets"], warm_gets_per_mb=d["gets"] / (2 * mb),
               load_after=load())
    objects, size, chunks = bucket_chunks(servers.minio, prefix)
    row["leaders"] = leaders(agents[0], topic)
    row.update(objects=objects, object_bytes=size, chunks=chunks, chunks_per_mb=chunks / mb)
    log(f"produce N={n} T={t}: {res['produce_mb_s']} MB/s, produce p50/p99 "
        f"{res['produce_p50_ms']}/{res['produce_p99_ms']} ms, e2e p50/p99 "
        f"{res['e2e_p50_ms']}/{res['e2e_p99_ms']} ms, catch-up {res['consume_mb_s']} MB/s; "
        f"PUTs {d['puts']:.0f} ({d['puts'] / mb:.3f}/MB); GETs (tail + warm catch-up) "
        f"{d['gets']:.0f}; bucket: {objects} objects, {size / MIB:.1f} MiB, {chunks} chunks; "
        f"waiting fetches woken {d['wake_read']:.0f} times to read, "
        f"{d['wake_skipped']:.0f} left waiting")

    if args.wide_in_flight:
        wide_load = load()
        before = scrape(agents)
        res = bench(args, servers.workdir, f"produce-wide-n{n}-{t}", agents[0].address,
                    topic + "-wide", ["--records", str(args.records), "--max-in-flight",
                                      str(args.wide_in_flight)], n)
        d = delta(before, scrape(agents))
        row["wide"] = dict(res, load=wide_load, puts_per_mb=d["puts"] / mb)
        log(f"produce, {args.wide_in_flight} in flight, N={n} T={t}: {res['produce_mb_s']} "
            f"MB/s, produce p50/p99 {res['produce_p50_ms']}/{res['produce_p99_ms']} ms, e2e "
            f"p50/p99 {res['e2e_p50_ms']}/{res['e2e_p99_ms']} ms; PUTs {d['puts']:.0f} "
            f"({d['puts'] / mb:.3f}/MB)")

    row["cold_on"] = cold_read(args, servers, cl, agents, [None] * n, f"cold-on-n{n}-{t}",
                               topic, mb)
    if n > 1:
        row["cold_off"] = cold_read(args, servers, cl, agents, [f"z{i + 1}" for i in range(n)],
                                    f"cold-off-n{n}-{t}", topic, mb)
    elif args.scale_out > 1:
        more = [cl.add_agent(f"agent{i + 1}", extra=["--node-id", str(i + 1)] + extra)
                for i in range(1, args.scale_out)]
        everyone = agents + more
        k = len(everyone)
        row["scale_on"] = cold_read(args, servers, cl, everyone, [None] * k,
                                    f"scale-on-n{n}-{t}", topic, mb)
        row["scale_off"] = cold_read(args, servers, cl, everyone,
                                     [f"z{i + 1}" for i in range(k)],
                                     f"scale-off-n{n}-{t}", topic, mb)
    bad = {n_: r for n_, r in cl.stop(timeout=30).items() if r[0] != 0}
    if bad:
        raise Failed(f"agents did not stop cleanly: {bad}")
    panics = [a.name for a in cl.agents if "panicked" in a.log_text()]
    if panics:
        raise Failed(f"panic in the log of {panics}")
    return row


# ------------------------------------------------------------------ report

def table(rows, args):
    mb = args.records * args.record_size / MIB
    out = []
    out.append("| agents | batch timeout | load (1 min) | produce MB/s | produce p50 / p99 ms "
               "| end-to-end p50 / p99 ms | PUTs/MB | cold catch-up GETs/MB "
               "| peer hits (GETs saved) | fetch wakeups read / skipped |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p, on, off = r["produce"], r["cold_on"], r.get("cold_off")
        saved = f"{off['gets'] - on['gets']:.0f}" if off else "n/a"
        out.append(
            f"| {r['n']} | {r['t']} | {r['load']} | {p['produce_mb_s']} "
            f"| {p['produce_p50_ms']} / {p['produce_p99_ms']} "
            f"| {p['e2e_p50_ms']} / {p['e2e_p99_ms']} | {r['puts_per_mb']:.3f} "
            f"| {on['gets_per_mb']:.3f} | {on['peer_hit']:.0f} ({saved}) "
            f"| {r.get('wake_read', 0):.0f} / {r.get('wake_skipped', 0):.0f} |")
    out.append("")
    out.append("Cold catch-up reads (agents restarted, 2-member consumer group from offset 0):")
    out.append("")
    out.append("| agents | batch timeout | leaders of the 8 partitions | objects (chunks) in bucket "
               "| cache on: load, read MB/s | GETs (per MB) | peer hits / fallbacks / served "
               "| cache off: load, read MB/s | GETs (per MB) | GETs saved |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for kind, on, off, n in (("", r["cold_on"], r.get("cold_off"), r["n"]),
                                 ("scale", r.get("scale_on"), r.get("scale_off"),
                                  args.scale_out)):
            if on is None:
                continue
            who = f"{n}" if not kind else f"{n} reading what 1 wrote"
            cells = [who, r["t"], str(on.get("leaders")), f"{r['objects']} ({r['chunks']})",
                     f"{on['load']}, {on['mb_s']}", f"{on['gets']:.0f} ({on['gets_per_mb']:.3f})",
                     f"{on['peer_hit']:.0f} / {on['fallback']:.0f} / {on['served']:.0f}"]
            if off:
                cells += [f"{off['load']}, {off['mb_s']}",
                          f"{off['gets']:.0f} ({off['gets_per_mb']:.3f})",
                          f"{off['gets'] - on['gets']:.0f}"]
            else:
                cells += ["n/a (one agent)", "n/a", "n/a"]
            out.append("| " + " | ".join(cells) + " |")
    wide = [r for r in rows if "wide" in r]
    if wide:
        out.append("")
        out.append(f"Produce with --max-in-flight {args.wide_in_flight} (default 5), another "
                   f"topic, same agents:")
        out.append("")
        out.append("| agents | batch timeout | load (1 min) | produce MB/s | produce p50 / p99 ms "
                   "| end-to-end p50 / p99 ms | PUTs/MB |")
        out.append("|---|---|---|---|---|---|---|")
        for r in wide:
            w = r["wide"]
            out.append(f"| {r['n']} | {r['t']} | {w['load']} | {w['produce_mb_s']} "
                       f"| {w['produce_p50_ms']} / {w['produce_p99_ms']} "
                       f"| {w['e2e_p50_ms']} / {w['e2e_p99_ms']} | {w['puts_per_mb']:.3f} |")
    out.append("")
    out.append(f"({args.records} records of {args.record_size} B = {mb:.1f} MB per run, "
               f"MB = 2^20 bytes of record values; load = 1-minute load average when the "
               f"step started)")
    return "\n".join(out)


def main_with(args):
    servers = Servers(args.shoal, args.minio, args.etcd, workdir=args.workdir, keep=args.keep)
    took = servers.start()
    log(f"etcd {servers.etcd.endpoint} and MinIO {servers.minio.endpoint} up in {took:.1f}s; "
        f"work directory {servers.workdir}")
    rows = []
    t0 = time.time()
    for n in args.agents:
        for t in args.timeouts:
            rows.append(one_run(args, servers, n, t))
    log(f"matrix done in {time.time() - t0:.0f}s")
    for r in rows:
        detail = {k: v for k, v in r.items() if k not in ("produce", "wide")}
        print("ROW " + json.dumps(detail, sort_keys=True), flush=True)
        for key in ("produce", "wide"):
            if key in r:
                print("RESULT " + " ".join(f"{k}={v}" for k, v in r[key].items()
                                           if k != "load"), flush=True)
    print(flush=True)
    print(f"machine: {os.cpu_count()} cores, load average at the end "
          f"{open('/proc/loadavg').read().strip()}", flush=True)
    print(table(rows, args), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--minio", required=True)
    ap.add_argument("--etcd", default="etcd")
    ap.add_argument("--records", type=int, default=250000)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--agents", default="1 2 3")
    ap.add_argument("--timeouts", default="50ms 250ms")
    ap.add_argument("--scale-out", type=int, default=3,
                    help="agents reading the 1-agent runs' data (0: skip)")
    ap.add_argument("--wide-in-flight", type=int, default=20,
                    help="also produce once more with this --max-in-flight (0: skip)")
    ap.add_argument("--seconds", type=int, default=1500)
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.agents = [int(x) for x in args.agents.replace(",", " ").split()]
    args.timeouts = args.timeouts.replace(",", " ").split()
    run(lambda: main_with(args), args.seconds)


if __name__ == "__main__":
    main()
