#!/usr/bin/env python3
"""How big etcd's database gets under Shoal's writes, with and without Shoal compacting
etcd's history (`--metadata-history`). Run through bench/etcd_history.sh.

For each setting (`0s`: never compacted by Shoal, etcd run with its defaults, so never
compacted at all; and e.g. `20s`), on a fresh etcd and MinIO:
 1. one agent `--batch-timeout 10ms --retention-check-interval 5s --metadata-history H`
    (a short batch timeout means many flushes, each one etcd transaction; object
    compaction on, as by default, which rewrites index entries in etcd too);
 2. `shoal-bench --duration D --record-size 100 --batch-records 10 --max-in-flight 1`
    into an 8-partition topic: a closed loop of small requests, so about one flush per
    round trip while moving little data (etcd's growth depends on flushes, not bytes);
 3. every 5 s etcd's own figures from its JSON gateway (POST /v3/maintenance/status):
    the revision (how many writes so far), dbSize (the file) and dbSizeInUse (pages
    holding live data or retained history).

Prints one line per sample and a table. Nothing is asserted; the exit status is non-zero
only if a step failed.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "cluster"))

from cluster import Cluster, Failed, Servers  # noqa: E402

MIB = 1 << 20


def etcd_status(etcd):
    req = urllib.request.Request(f"http://{etcd.endpoint}/v3/maintenance/status",
                                 data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        s = json.loads(r.read())
    return {"revision": int(s["header"]["revision"]), "db": int(s["dbSize"]),
            "in_use": int(s.get("dbSizeInUse", s["dbSize"]))}


def one_run(args, history):
    servers = Servers(args.shoal, args.minio, etcd_binary=args.etcd,
                      workdir=os.path.join(args.workdir, f"history-{history}"))
    try:
        servers.start()
        cl = Cluster(servers, f"hist-{history}", batch_timeout="10ms")
        agent = cl.add_agent("agent1", extra=["--retention-check-interval", "5s",
                                              "--metadata-history", history])
        cl.start_all(timeout=60)
        samples = []
        done = threading.Event()

        def sampler():
            t0 = time.time()
            while not done.wait(5):
                s = etcd_status(servers.etcd)
                s["t"] = round(time.time() - t0)
                samples.append(s)
                print(f"[history {history}] t={s['t']}s revision {s['revision']}, db "
                      f"{s['db'] / MIB:.1f} MiB, in use {s['in_use'] / MIB:.1f} MiB",
                      flush=True)
        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        out = os.path.join(servers.workdir, "bench.out")
        with open(out, "wb") as f:
            rc = subprocess.run([args.bench, "--bootstrap", agent.address, "--topic", "hist",
                                 "--partitions", "8", "--record-size", "100",
                                 "--batch-records", "10", "--max-in-flight", "1",
                                 "--duration", str(args.seconds)],
                                stdout=f, stderr=subprocess.STDOUT, timeout=1800).returncode
        time.sleep(6)  # one more retention check after the load
        done.set()
        th.join()
        if rc != 0:
            raise Failed(f"shoal-bench exited {rc}; see {out}")
        final = etcd_status(servers.etcd)
        compactions = agent.log_text().count("compacted the metadata store's history")
        bad = {n: r for n, r in cl.stop(timeout=30).items() if r[0] != 0}
        if bad:
            raise Failed(f"agent did not stop cleanly: {bad}")
        peak = max([s["db"] for s in samples] + [final["db"]])
        return {"history": history, "revision": final["revision"], "db": final["db"],
                "in_use": final["in_use"], "peak_db": peak, "compactions": compactions}
    finally:
        servers.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--etcd", default="etcd")
    ap.add_argument("--minio", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seconds", type=int, default=150)
    ap.add_argument("--histories", default="0s 20s")
    args = ap.parse_args()
    rows = [one_run(args, h) for h in args.histories.split()]
    print()
    print(f"{args.seconds} s of small produce requests through one agent, --batch-timeout "
          f"10ms; {os.cpu_count()} cores")
    print()
    print("| --metadata-history | etcd revisions written | Shoal compactions "
          "| etcd db file (peak) | db in use at the end | bytes per revision (file / revisions) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['history']} | {r['revision']} | {r['compactions']} "
              f"| {r['db'] / MIB:.1f} MiB ({r['peak_db'] / MIB:.1f}) "
              f"| {r['in_use'] / MIB:.1f} MiB | {r['db'] / max(r['revision'], 1):.0f} |")


if __name__ == "__main__":
    main()
