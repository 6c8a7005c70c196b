"""Shared fixtures and helpers for the Python consumer-group compatibility tests.

The broker under test is named by SHOAL_BOOTSTRAP (host:port). It may be Shoal
or Apache Kafka: every check here must pass against Kafka. The server is
assumed to have topic auto-creation off and no idempotent producer, but to
implement consumer groups (classic protocol).
"""

import os
import secrets
import socket
import threading
import time

import pytest

# Group timing: quick failure detection, bounded waits.
SESSION_TIMEOUT_MS = int(os.environ.get("SHOAL_GROUPS_SESSION_TIMEOUT_MS", "6000"))
HEARTBEAT_INTERVAL_MS = 1000
WAIT = 60  # seconds, any wait for a group to settle or records to arrive

RUN_ID = secrets.token_hex(4)
_counter = [0]


def unique_name(prefix):
    _counter[0] += 1
    return f"compat-py-groups-{prefix}-{RUN_ID}-{_counter[0]}"


@pytest.fixture(scope="session")
def bootstrap():
    addr = os.environ.get("SHOAL_BOOTSTRAP")
    if not addr:
        pytest.fail("SHOAL_BOOTSTRAP (host:port of the broker under test) is not set")
    host, _, port = addr.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        pytest.fail(f"cannot connect to SHOAL_BOOTSTRAP={addr}: {exc}")
    return addr


def wait_until(pred, timeout, what, interval=0.2):
    """Poll pred() until it returns a truthy value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as exc:  # keep polling; report the last failure
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class Ledger:
    """What was produced, consumed and committed, in one global order.

    Loss: every produced record must be consumed at least once with the
    produced value. Duplicates: a record consumed again is allowed only if no
    commit covering it (offset > its offset) had succeeded before, i.e. only
    records after the previous owner's last successful commit.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.seq = 0
        self.produced = {}  # (partition, offset) -> value
        self.consumed = {}  # (partition, offset) -> [(seq, who, value)]
        self.commits = {}  # partition -> [(offset, seq)]
        self.by_member = {}
        self.problems = []

    def add_produced(self, partition, offset, value):
        with self.lock:
            self.produced[(partition, offset)] = value

    def add_consumed(self, who, partition, offset, value):
        with self.lock:
            self.seq += 1
            self.by_member[who] = self.by_member.get(who, 0) + 1
            seen = self.consumed.setdefault((partition, offset), [])
            if seen:
                for off, s in self.commits.get(partition, []):
                    if off > offset and s < self.seq:
                        self._problem(f"{who} consumed {partition}@{offset} again (first by {seen[0][1]}) "
                                      f"although offset {off} was committed before")
                        break
            seen.append((self.seq, who, value))

    def add_committed(self, offsets):
        """offsets: {partition: next offset}"""
        with self.lock:
            self.seq += 1
            for p, off in offsets.items():
                self.commits.setdefault(p, []).append((off, self.seq))

    def _problem(self, text):
        if len(self.problems) < 20:
            self.problems.append(text)

    def consumed_by(self, who):
        with self.lock:
            return self.by_member.get(who, 0)

    def missing(self):
        with self.lock:
            return sum(1 for k in self.produced if k not in self.consumed)

    def duplicates(self):
        with self.lock:
            return sum(len(v) - 1 for v in self.consumed.values())

    def verify(self):
        with self.lock:
            problems = list(self.problems)
            bad = []
            for k, events in self.consumed.items():
                want = self.produced.get(k)
                for _, who, value in events:
                    if value != want:
                        bad.append(f"{who} consumed {k[0]}@{k[1]} value {value!r}, produced {want!r}")
            problems += bad[:5]
            if len(bad) > 5:
                problems.append(f"{len(bad) - 5} more unexpected values")
            miss = [k for k in self.produced if k not in self.consumed]
            if miss:
                problems.append(f"{len(miss)} produced records never consumed, e.g. {sorted(miss)[:5]}")
        assert not problems, "; ".join(problems)
