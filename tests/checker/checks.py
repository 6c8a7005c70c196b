"""The checks: a History and the final read-back (the ground truth) in, anomalies out.

Each anomaly is (check, time, detail); the time is that of the operation that shows it
(the acknowledgement of a lost write, the poll that skipped, the commit that went back),
so it can be charged to the phase (fault) in which it happened. The checks:

  lost            acknowledged (or, in a transaction the client was told committed)
                  and not in the read-back;
  duplicate       one value of an idempotent or transactional producer at two offsets
                  (plain producers may duplicate on retries: counted, not an anomaly);
  inconsistent    one (topic, partition, offset) with two values across the acknowledgement,
                  the consumers and the read-backs, or with a value nobody wrote;
  poll-skip       within one assignment of a partition to a consumer, offsets a then b with
                  a record visible to that consumer (the read-back at its isolation level)
                  at an offset between them;
  poll-order      within one assignment, an offset not above the one before;
  aborted-read    a read_committed consumer (or read-back) saw a record of a transaction
                  the producer was told was aborted;
  uncommitted-read a read_committed consumer saw a record of a transaction before its
                  producer asked to commit it, or the read_committed read-back holds one of
                  a transaction that was never committed (aborted or abandoned by a fatal
                  error; those whose commit outcome is unknown are only counted);
  offset-backwards a group's committed offset of a partition went down: in the commits the
                  clients were told succeeded (in completion order), or in the offsets read
                  back with OffsetFetch (no consumer here ever seeks back).
"""

from collections import defaultdict

from history import parse_value

CHECKS = ["lost", "duplicate", "inconsistent", "poll-skip", "poll-order", "aborted-read",
          "uncommitted-read", "offset-backwards"]


def analyse(h, readback, end_t):
    """`readback`: {(topic, isolation): {(p, o): value}}; `end_t`: the time of the
    read-back. Returns (anomalies, info counts)."""
    anomalies = []
    info = defaultdict(int)

    def bad(check, t, detail):
        anomalies.append((check, t, detail))

    with h.lock:
        writes = dict(h.writes)
        txns = dict(h.txns)
        polls = list(h.polls)
        runs = dict(h.runs)
        commits = {g: list(v) for g, v in h.commits.items()}
        seen = {g: list(v) for g, v in h.offsets_seen.items()}

    # Where each value is in the read-back (every isolation level), and the visible set.
    where = defaultdict(set)  # value -> {(topic, p, o)}
    values_at = defaultdict(set)  # (topic, p, o) -> {value}
    for (topic, _iso), recs in readback.items():
        for (p, o), v in recs.items():
            where[v].add((topic, p, o))
            values_at[(topic, p, o)].add(v)

    # How far each partition was read back: an incomplete read-back (a harness problem,
    # reported as such) must not turn the records it did not reach into "lost" ones.
    reached = defaultdict(lambda: -1)
    for (topic, _iso), recs in readback.items():
        for (p, o) in recs:
            reached[(topic, p)] = max(reached[(topic, p)], o)

    def unread(w):
        return w["ack"] is not None and w["ack"][1] is not None and \
            w["ack"][1] > reached[(w["topic"], w["ack"][0])]

    def txn_of(w):
        return txns.get((w["producer"], w["txn"])) if w["kind"] == "txn" else None

    # lost: acknowledged and absent. Transactional records count when the txn committed.
    for v, w in writes.items():
        if unread(w):
            info["acked beyond the read-back (not checked)"] += 1
            continue
        if w["kind"] == "txn":
            t = txn_of(w)
            if t is None or t["outcome"] != "committed":
                continue
            rc = readback.get((w["topic"], "read_committed"), {})
            if not any(v == rc.get((p, o)) for (_t, p, o) in where.get(v, ())):
                bad("lost", t["end"], f"{v[:48]} of committed txn {w['producer']}/{w['txn']}, "
                                      f"acked at {w['ack']}")
        elif w["ack"] is not None and v not in where:
            bad("lost", w["ack_t"], f"{v[:48]} acked at {w['topic']}/{w['ack'][0]}@{w['ack'][1]}")
        elif w["ack"] is None and v in where:
            info["unacked but present"] += 1

    # duplicate
    for v, places in where.items():
        if len(places) < 2:
            continue
        w = writes.get(v)
        if w is None:
            continue
        if w["kind"] == "plain":
            info["plain duplicates (allowed)"] += 1
        else:
            bad("duplicate", w["ack_t"] or w["sent"], f"{v[:48]} at {sorted(places)}")

    # inconsistent: every value attributed to one offset, from every observer.
    at = defaultdict(dict)  # (topic, p, o) -> {value: first time}
    for v, w in writes.items():
        if w["ack"] is not None and w["ack"][1] is not None:
            at[(w["topic"], *w["ack"])].setdefault(v, w["ack_t"])
    for (_c, _g, _iso, _run, topic, p, o, v, t) in polls:
        at[(topic, p, o)].setdefault(v, t)
    for key, vs in values_at.items():
        for v in vs:
            at[key].setdefault(v, end_t)
    for key, vs in at.items():
        if len(vs) > 1:
            t = sorted(vs.values())[1]
            bad("inconsistent", t, f"{key[0]}/{key[1]}@{key[2]}: {sorted(x[:40] for x in vs)}")
        for v, t in vs.items():
            if v not in writes:
                bad("inconsistent", t, f"{key[0]}/{key[1]}@{key[2]} holds {v[:40]!r}, never written")

    # poll-skip and poll-order, per assignment run.
    by_run = defaultdict(list)
    for (c, g, iso, run, topic, p, o, v, t) in polls:
        by_run[run].append((o, t, iso, topic, p, c))
    visible = {}
    for (topic, iso), recs in readback.items():
        per = defaultdict(list)
        for (p, o) in recs:
            per[p].append(o)
        visible[(topic, iso)] = {p: sorted(os_) for p, os_ in per.items()}
    import bisect
    for run, seq in by_run.items():
        for (a, _ta, iso, topic, p, c), (b, tb, _i, _t, _p, _c) in zip(seq, seq[1:]):
            if b <= a:
                bad("poll-order", tb, f"{c} {topic}/{p} run {run}: offset {a} then {b}")
                continue
            offs = visible.get((topic, iso), {}).get(p, [])
            i = bisect.bisect_right(offs, a)
            if i < len(offs) and offs[i] < b:
                bad("poll-skip", tb, f"{c} {topic}/{p} run {run}: offset {a} then {b}, "
                                     f"skipping {offs[i]} ({b - a - 1} offsets between)")

    # aborted-read and uncommitted-read
    def check_txn_read(v, t_seen, who):
        w = writes.get(v)
        if w is None or w["kind"] != "txn":
            return
        t = txn_of(w)
        if t is None:
            return
        name = f"{w['producer']}/{w['txn']}"
        if t["outcome"] == "aborted":
            bad("aborted-read", t_seen, f"{who} read {v[:48]} of aborted txn {name}")
        elif t["end_start"] is None or t_seen < t["end_start"]:
            bad("uncommitted-read", t_seen, f"{who} read {v[:48]} of txn {name} before "
                                            f"its commit was asked for")
        elif t["outcome"] is None or (t["outcome"] == "unknown" and t["intent"] == "abort"):
            bad("uncommitted-read", t_seen, f"{who} read {v[:48]} of txn {name}, "
                                            f"never committed ({t['outcome']}, {t['intent']})")
        elif t["outcome"] == "unknown":
            info["read_committed saw a txn of unknown outcome"] += 1

    for (c, g, iso, run, topic, p, o, v, t) in polls:
        if iso == "read_committed":
            check_txn_read(v, t, c)
    for (topic, iso), recs in readback.items():
        if iso == "read_committed":
            for (p, o), v in recs.items():
                check_txn_read(v, end_t, f"read-back {topic}/{p}@{o}")

    # offset-backwards
    for g, cs in commits.items():
        top, told = {}, set()
        for (topic, p, off, t, c) in sorted(cs, key=lambda x: x[3]):
            k = (topic, p)
            # An auto-committing client repeats its last commit: count each one once.
            if k in top and off < top[k][0] and (k, off, c, top[k]) not in told:
                told.add((k, off, c, top[k]))
                bad("offset-backwards", t, f"group {g} {topic}/{p}: {c} committed {off} "
                                           f"after {top[k][1]} committed {top[k][0]}")
            if k not in top or off > top[k][0]:
                top[k] = (off, c)
    for g, ss in seen.items():
        top, told = {}, set()
        for (topic, p, off, t) in ss:
            k = (topic, p)
            if k in top and off < top[k] and (k, off, top[k]) not in told:
                told.add((k, off, top[k]))
                bad("offset-backwards", t, f"group {g} {topic}/{p}: OffsetFetch gave {off} "
                                           f"after {top[k]}")
            top[k] = max(top.get(k, off), off)

    # figures
    info["writes"] = len(writes)
    info["acked"] = sum(1 for w in writes.values() if w["ack"] is not None)
    # librdkafka reports success without an offset for DUPLICATE_SEQUENCE_NUMBER answers
    info["acked without offset"] = sum(1 for w in writes.values()
                                       if w["ack"] is not None and w["ack"][1] is None)
    info["txns committed"] = sum(1 for t in txns.values() if t["outcome"] == "committed")
    info["txns aborted"] = sum(1 for t in txns.values() if t["outcome"] == "aborted")
    info["txns unknown"] = sum(1 for t in txns.values() if t["outcome"] in ("unknown", None))
    info["polls"] = len(polls)
    info["assignment runs"] = len(runs)
    info["commits"] = sum(len(v) for v in commits.values())
    return anomalies, dict(info)


def table(h, anomalies, per_phase_ops):
    """The report table: one row per phase, one column per check, plus acks and errors."""
    counts = defaultdict(lambda: defaultdict(int))
    for check, t, _ in anomalies:
        counts[h.phase_of(t)][check] += 1
    short = {"lost": "lost", "duplicate": "dup", "inconsistent": "incons", "poll-skip": "skip",
             "poll-order": "order", "aborted-read": "abrt-rd", "uncommitted-read": "uncm-rd",
             "offset-backwards": "off-back"}
    head = f"{'phase':<34} {'acks':>6} {'fails':>5} " + " ".join(f"{short[c]:>8}" for c in CHECKS)
    lines = [head, "-" * len(head)]
    total = defaultdict(int)
    for i, ph in enumerate(h.phases):
        acks, fails = per_phase_ops.get(i, (0, 0))
        row = f"{ph['name'][:34]:<34} {acks:>6} {fails:>5} "
        row += " ".join(f"{counts[i][c]:>8}" for c in CHECKS)
        lines.append(row)
        for c in CHECKS:
            total[c] += counts[i][c]
    lines.append("-" * len(head))
    lines.append(f"{'total':<34} {'':>6} {'':>5} " + " ".join(f"{total[c]:>8}" for c in CHECKS))
    return "\n".join(lines), dict(total)
