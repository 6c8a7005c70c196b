"""Shared fixtures and helpers for the Python client compatibility tests.

The broker under test is named by the SHOAL_BOOTSTRAP environment variable
(host:port). It may be Shoal or Apache Kafka: every check here must pass
against Kafka. The server is assumed to have topic auto-creation off, so topics are created
through the admin API; consumers use explicit partition assignment (groups
have their own suites).
"""

import os
import secrets
import socket
import time

import pytest

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PARTITIONS = 4
RECORDS_PER_PARTITION = 30

# One random suffix per pytest run so runs never collide on topic names.
RUN_ID = secrets.token_hex(4)
_counter = [0]


def unique_topic(prefix):
    _counter[0] += 1
    return f"compat-py-{prefix}-{RUN_ID}-{_counter[0]}"


@pytest.fixture(scope="session")
def bootstrap():
    """The broker address. Checked once: if nothing answers, every test
    errors at once instead of each one waiting out its own timeouts."""
    addr = os.environ.get("SHOAL_BOOTSTRAP")
    if not addr:
        pytest.fail("SHOAL_BOOTSTRAP (host:port of the broker under test) is not set")
    host, _, port = addr.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        pytest.fail(f"cannot connect to SHOAL_BOOTSTRAP={addr}: {exc}")
    _check_api_versions(addr)
    return addr


def _check_api_versions(addr):
    """One ApiVersions round trip with kafka-python, bounded to 15 s."""
    from kafka import KafkaAdminClient

    try:
        client = KafkaAdminClient(bootstrap_servers=addr, request_timeout_ms=10000,
                                  bootstrap_timeout_ms=15000, client_id="compat-precheck")
    except Exception as exc:
        pytest.fail(f"no usable Kafka API at SHOAL_BOOTSTRAP={addr}: {exc!r}")
    client.close()


def expected_records(tag, partition, n=RECORDS_PER_PARTITION):
    """Deterministic records for one partition: (key, value, headers).

    Covers null keys, empty and binary values, null values (tombstones),
    no headers, repeated header keys and null header values.
    """
    out = []
    for i in range(n):
        # (kafka-python refuses a record whose key and value are both null,
        # so the null keys never fall on a tombstone here.)
        key = None if i % 7 == 3 and i % 5 != 4 else f"key-{partition}-{i}".encode()
        if i % 5 == 4:
            value = None  # tombstone
        elif i % 11 == 6:
            value = bytes(range(256)) * 3  # binary, every byte value
        else:
            value = f"value-{tag}-{partition}-{i}-".encode() * (1 + i % 4)
        if i % 3 == 0:
            headers = []
        elif i % 3 == 1:
            headers = [("h-index", str(i).encode()), ("h-bin", b"\x00\xff\x01")]
        else:
            headers = [("dup", b"first"), ("dup", b"second"), ("nullh", None)]
        out.append((key, value, headers))
    return out


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
