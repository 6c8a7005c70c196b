"""The history of a checker run: every operation the clients did and what they saw.

One `History` per run, shared by every client thread (one lock). Times are
`time.monotonic()` seconds; a phase (a fault and the recovery after it) is a time window,
and each anomaly is charged to the phase in which the operation that shows it happened.

Values are unique: `idem/P/SEQ/...`, `plain/P/SEQ/...` and `txn/P/N/I/...` (producer P's
SEQth record, or the Ith record of its Nth transaction); `parse_value` gets the parts back.
"""

import json
import threading
import time
from collections import defaultdict


def parse_value(value):
    """(kind, producer, seq, txn number or None) of a value the workload wrote, or None."""
    parts = value.split("/")
    if len(parts) < 4:
        return None
    if parts[0] in ("idem", "plain"):
        return parts[0], parts[1], int(parts[2]), None
    if parts[0] == "txn" and len(parts) >= 5:
        return "txn", parts[1], int(parts[3]), int(parts[2])
    return None


class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        # value -> {kind, producer, topic, sent, ack (p, o) | None, ack_t, error, txn}
        self.writes = {}
        # (producer, txn number) -> {intent, outcome, begin, end_start, end, values, error}
        self.txns = {}
        # (consumer, group, isolation, run, topic, p, o, value, t)
        self.polls = []
        self.runs = {}  # run -> (consumer, group, topic, p, t assigned)
        # group -> [(topic, p, offset, t, consumer)]: commits the client was told succeeded
        self.commits = defaultdict(list)
        # group -> [(topic, p, offset, t)]: committed offsets read back with OffsetFetch
        self.offsets_seen = defaultdict(list)
        self.errors = defaultdict(int)  # client error kind -> count
        self.phases = []  # [{"name", "fault", "target", "start", "end", "notes"}]

    def now(self):
        return time.monotonic()

    # -- producers
    def sent(self, value, kind, producer, topic, txn=None):
        with self.lock:
            self.writes[value] = {"kind": kind, "producer": producer, "topic": topic,
                                  "sent": time.monotonic(), "ack": None, "ack_t": None,
                                  "error": None, "txn": txn}

    def acked(self, value, p, o):
        with self.lock:
            w = self.writes[value]
            # o is None when the client was told "delivered" without an offset
            w["ack"], w["ack_t"] = (p, o if o is not None and o >= 0 else None), time.monotonic()

    def failed(self, value, error):
        with self.lock:
            self.writes[value]["error"] = error
            self.writes[value]["err_t"] = time.monotonic()
            self.errors[f"produce: {error}"[:80]] += 1

    def txn_begin(self, key, intent):
        with self.lock:
            self.txns[key] = {"intent": intent, "outcome": None, "begin": time.monotonic(),
                              "end_start": None, "end": None, "values": [], "error": None}

    def txn_value(self, key, value):
        with self.lock:
            self.txns[key]["values"].append(value)

    def txn_ending(self, key):
        with self.lock:
            self.txns[key]["end_start"] = time.monotonic()

    def txn_end(self, key, outcome, error=None):
        """outcome: committed | aborted (the client was told so) | unknown."""
        with self.lock:
            t = self.txns[key]
            t["outcome"], t["end"], t["error"] = outcome, time.monotonic(), error
            if error:
                self.errors[f"txn: {error}"[:80]] += 1

    # -- consumers
    def new_run(self, consumer, group, topic, p):
        with self.lock:
            run = len(self.runs)
            self.runs[run] = (consumer, group, topic, p, time.monotonic())
            return run

    def polled(self, consumer, group, isolation, run, topic, p, o, value):
        with self.lock:
            self.polls.append((consumer, group, isolation, run, topic, p, o, value,
                               time.monotonic()))

    def committed(self, group, consumer, topic, p, offset):
        with self.lock:
            self.commits[group].append((topic, p, offset, time.monotonic(), consumer))

    def offset_seen(self, group, topic, p, offset):
        with self.lock:
            self.offsets_seen[group].append((topic, p, offset, time.monotonic()))

    def error(self, kind):
        with self.lock:
            self.errors[kind[:80]] += 1

    # -- phases
    def phase(self, name, fault=None, target=None):
        with self.lock:
            t = time.monotonic()
            if self.phases:
                self.phases[-1]["end"] = t
            self.phases.append({"name": name, "fault": fault, "target": target,
                                "start": t, "end": None, "notes": []})

    def note(self, text):
        with self.lock:
            if self.phases:
                self.phases[-1]["notes"].append(f"{time.monotonic() - self.t0:7.1f}s {text}")

    def phase_of(self, t):
        """Index of the phase `t` falls in (the last one for later times)."""
        for i, ph in enumerate(self.phases):
            if ph["end"] is None or t < ph["end"]:
                return i
        return len(self.phases) - 1

    def dump(self, path):
        with self.lock:
            out = {
                "phases": [dict(ph, start=round(ph["start"] - self.t0, 3),
                                end=None if ph["end"] is None else round(ph["end"] - self.t0, 3))
                           for ph in self.phases],
                "writes": {v: dict(w, **{f: round(w[f] - self.t0, 3)
                                         for f in ("sent", "ack_t", "err_t") if w.get(f)})
                           for v, w in self.writes.items()},
                "txns": {f"{k[0]}/{k[1]}": dict(t, **{f: None if t[f] is None else
                                                       round(t[f] - self.t0, 3)
                                                       for f in ("begin", "end_start", "end")})
                         for k, t in self.txns.items()},
                "polls": [list(p[:8]) + [round(p[8] - self.t0, 3)] for p in self.polls],
                "runs": {r: list(v[:4]) + [round(v[4] - self.t0, 3)] for r, v in self.runs.items()},
                "commits": {g: [list(c[:3]) + [round(c[3] - self.t0, 3), c[4]] for c in v]
                            for g, v in self.commits.items()},
                "offsets_seen": {g: [list(c[:3]) + [round(c[3] - self.t0, 3)] for c in v]
                                 for g, v in self.offsets_seen.items()},
                "errors": dict(self.errors),
            }
        with open(path, "w") as f:
            json.dump(out, f)
