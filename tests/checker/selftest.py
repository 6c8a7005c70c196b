"""Self-test of the checker's own parts, without Shoal: the fault proxy moves bytes, stops
moving them while partitioned and loses nothing across a heal; and each check finds the
anomaly it exists for in a made-up history (and nothing in a clean one).

    python3 tests/checker/selftest.py      (run.sh runs it first; a few seconds)
"""

import os
import socket
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "compat", "txn-restart"))

from checks import analyse  # noqa: E402
from history import History  # noqa: E402
from proxy import Proxy  # noqa: E402


def echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=lambda c=c: [c.sendall(d) for d in iter(lambda: c.recv(4096), b"")],
                             daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def test_proxy():
    px = Proxy("t", echo_server())
    s = socket.create_connection(("127.0.0.1", px.port), timeout=5)
    s.sendall(b"one")
    assert s.recv(10) == b"one"
    px.partition()
    s.sendall(b"two")
    s.settimeout(1.0)
    try:
        got = s.recv(10)
        raise AssertionError(f"bytes crossed a partition: {got!r}")
    except socket.timeout:
        pass
    px.heal()
    s.settimeout(5)
    assert s.recv(10) == b"two", "the bytes sent during the partition were lost"
    px.partition()
    s2 = socket.create_connection(("127.0.0.1", px.port), timeout=5)
    s2.sendall(b"new")
    s2.settimeout(1.0)
    try:
        s2.recv(10)
        raise AssertionError("a connection made during a partition got through")
    except socket.timeout:
        pass
    px.heal()
    s2.settimeout(5)
    assert s2.recv(10) == b"new"
    px.close()


def history():
    h = History()
    h.phase("baseline")
    # idempotent producer: values at offsets 0..4 of partition 0
    for i in range(5):
        v = f"idem/p/{i}/"
        h.sent(v, "idem", "p", "t")
        h.acked(v, 0, i)
    # one committed and one aborted transaction on topic x
    h.txn_begin(("q", 0), "commit")
    h.sent("txn/q/0/0/", "txn", "q", "x", txn=0)
    h.txn_value(("q", 0), "txn/q/0/0/")
    h.acked("txn/q/0/0/", 0, 0)
    h.txn_ending(("q", 0))
    h.txn_end(("q", 0), "committed")
    h.txn_begin(("q", 1), "abort")
    h.sent("txn/q/1/0/", "txn", "q", "x", txn=1)
    h.txn_value(("q", 1), "txn/q/1/0/")
    h.acked("txn/q/1/0/", 0, 2)
    h.txn_ending(("q", 1))
    h.txn_end(("q", 1), "aborted")
    run = h.new_run("c", "g", "t", 0)
    for i in range(5):
        h.polled("c", "g", "read_uncommitted", run, "t", 0, i, f"idem/p/{i}/")
    h.committed("g", "c", "t", 0, 3)
    h.committed("g", "c", "t", 0, 5)
    readback = {("t", "read_uncommitted"): {(0, i): f"idem/p/{i}/" for i in range(5)},
                ("x", "read_uncommitted"): {(0, 0): "txn/q/0/0/", (0, 2): "txn/q/1/0/"},
                ("x", "read_committed"): {(0, 0): "txn/q/0/0/"}}
    return h, readback


def kinds(h, rb):
    anomalies, _ = analyse(h, rb, h.now())
    return sorted({a[0] for a in anomalies}), anomalies


def test_checks():
    h, rb = history()
    found, all_ = kinds(h, rb)
    assert found == [], f"a clean history has anomalies: {all_}"

    h, rb = history()  # delivered without an offset (a DUPLICATE_SEQUENCE_NUMBER answer)
    h.sent("idem/p/5/", "idem", "p", "t")
    h.acked("idem/p/5/", 0, None)
    rb[("t", "read_uncommitted")][(0, 5)] = "idem/p/5/"
    assert kinds(h, rb)[0] == [], kinds(h, rb)
    del rb[("t", "read_uncommitted")][(0, 5)]
    assert kinds(h, rb)[0] == ["lost"], kinds(h, rb)

    h, rb = history()
    del rb[("t", "read_uncommitted")][(0, 3)]
    assert "lost" in kinds(h, rb)[0]

    h, rb = history()  # a read-back that stopped early loses nothing
    del rb[("t", "read_uncommitted")][(0, 4)]
    assert kinds(h, rb)[0] == [], kinds(h, rb)

    h, rb = history()
    rb[("t", "read_uncommitted")][(0, 5)] = "idem/p/1/"
    assert "duplicate" in kinds(h, rb)[0]

    h, rb = history()
    run = h.new_run("d", "g", "t", 0)
    h.polled("d", "g", "read_uncommitted", run, "t", 0, 1, "idem/p/9/")
    assert "inconsistent" in kinds(h, rb)[0]  # a value nobody wrote

    h, rb = history()  # two written values at one offset
    run = h.new_run("d", "g", "t", 0)
    h.polled("d", "g", "read_uncommitted", run, "t", 0, 1, "idem/p/2/")
    assert kinds(h, rb)[0] == ["inconsistent"], kinds(h, rb)

    h, rb = history()  # the same offset twice in one assignment
    run = h.new_run("d", "g", "t", 0)
    h.polled("d", "g", "read_uncommitted", run, "t", 0, 3, "idem/p/3/")
    h.polled("d", "g", "read_uncommitted", run, "t", 0, 3, "idem/p/3/")
    assert kinds(h, rb)[0] == ["poll-order"], kinds(h, rb)

    h, rb = history()
    run = h.new_run("d", "g", "t", 0)
    h.polled("d", "g", "read_uncommitted", run, "t", 0, 1, "idem/p/1/")
    h.polled("d", "g", "read_uncommitted", run, "t", 0, 3, "idem/p/3/")
    h.polled("d", "g", "read_uncommitted", run, "t", 0, 2, "idem/p/2/")
    found = kinds(h, rb)[0]
    assert "poll-skip" in found and "poll-order" in found, found

    h, rb = history()
    rb[("x", "read_committed")][(0, 2)] = "txn/q/1/0/"
    assert "aborted-read" in kinds(h, rb)[0]

    h, rb = history()  # a read_committed poll before the commit was asked for
    h.txn_begin(("q", 2), "commit")
    h.sent("txn/q/2/0/", "txn", "q", "x", txn=2)
    h.acked("txn/q/2/0/", 0, 3)
    run = h.new_run("r", "gr", "x", 0)
    h.polled("r", "gr", "read_committed", run, "x", 0, 3, "txn/q/2/0/")
    h.txn_ending(("q", 2))
    h.txn_end(("q", 2), "committed")
    rb[("x", "read_committed")][(0, 3)] = "txn/q/2/0/"
    rb[("x", "read_uncommitted")][(0, 3)] = "txn/q/2/0/"
    assert kinds(h, rb)[0] == ["uncommitted-read"], kinds(h, rb)

    h, rb = history()
    h.committed("g", "c2", "t", 0, 4)
    assert kinds(h, rb)[0] == ["offset-backwards"]

    h, rb = history()
    h.offset_seen("g", "t", 0, 5)
    h.offset_seen("g", "t", 0, 2)
    assert kinds(h, rb)[0] == ["offset-backwards"]


if __name__ == "__main__":
    test_proxy()
    test_checks()
    print("checker selftest: ok")
