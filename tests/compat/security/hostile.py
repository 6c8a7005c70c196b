"""Hostile SASL handshakes over raw TLS sockets against a SASL_SSL listener.

    python hostile.py SASL_SSL_BOOTSTRAP CERT_DIR

1. an oversized SaslAuthenticate frame (10 MiB announced, before authentication) gets the
   connection closed, with no response;
2. afterwards a well-behaved client (SaslHandshake PLAIN, SaslAuthenticate as alice,
   Metadata) still works, so the server survived;
3. SaslHandshake with an unsupported mechanism answers UNSUPPORTED_SASL_MECHANISM (33) and
   lists exactly the enabled mechanisms (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512);
4. a Metadata request before authenticating gets the connection closed, with no response.
Prints `ok   NAME` / `FAIL NAME: why`, last line `hostile: N passed, M failed`.
"""

import socket
import ssl
import struct
import sys

HOST, PORT = sys.argv[1].rsplit(":", 1)
CERTS = sys.argv[2]
TIMEOUT = 15.0
ENABLED = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
SASL_HANDSHAKE, SASL_AUTHENTICATE, METADATA = 17, 36, 3
results = {"passed": 0, "failed": 0}


def check(name, fn):
    try:
        fn()
        results["passed"] += 1
        print(f"ok   {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal
        results["failed"] += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)


def connect():
    ctx = ssl.create_default_context(cafile=f"{CERTS}/ca.pem")
    raw = socket.create_connection((HOST, int(PORT)), timeout=TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname=HOST)


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request(api_key, version, correlation, body):
    """A request frame with header v1 (none of the APIs used here is flexible at these versions)."""
    msg = struct.pack(">hhi", api_key, version, correlation) + string("shoal-hostile") + body
    return struct.pack(">i", len(msg)) + msg


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def response(sock, correlation):
    (size,) = struct.unpack(">i", read_exact(sock, 4))
    assert 4 <= size <= 1 << 20, f"response size {size}"
    body = read_exact(sock, size)
    (got,) = struct.unpack(">i", body[:4])
    assert got == correlation, f"correlation id {got}, wanted {correlation}"
    return body[4:]


def closed_without_response(sock):
    """True when the peer closes (EOF, reset or TLS error) before sending a single byte."""
    try:
        data = sock.recv(1)
    except (ConnectionError, ssl.SSLError, OSError) as e:
        if isinstance(e, socket.timeout):
            raise AssertionError(f"connection still open after {TIMEOUT}s") from e
        return
    assert data == b"", f"server answered ({data!r}...) instead of closing"


def handshake(sock, mechanism, correlation=1):
    sock.sendall(request(SASL_HANDSHAKE, 1, correlation, string(mechanism)))
    body = response(sock, correlation)
    (error,) = struct.unpack(">h", body[:2])
    (count,) = struct.unpack(">i", body[2:6])
    mechs, at = [], 6
    for _ in range(max(count, 0)):
        (n,) = struct.unpack(">h", body[at:at + 2])
        mechs.append(body[at + 2:at + 2 + n].decode())
        at += 2 + n
    return error, mechs


def oversized_authenticate():
    s = connect()
    error, _ = handshake(s, "PLAIN")
    assert error == 0, f"SaslHandshake PLAIN error {error}"
    announced = 10 * 1024 * 1024
    head = struct.pack(">hhi", SASL_AUTHENTICATE, 1, 2) + string("shoal-hostile")
    s.sendall(struct.pack(">i", announced) + head + struct.pack(">i", announced - len(head) - 4))
    sent, chunk = len(head) + 4, b"\0" * 65536
    try:
        while sent < announced:
            s.sendall(chunk[: min(len(chunk), announced - sent)])
            sent += len(chunk)
    except (ConnectionError, ssl.SSLError, OSError):
        return  # closed while we were still sending: what we want
    closed_without_response(s)


def well_behaved_client():
    s = connect()
    error, _ = handshake(s, "PLAIN")
    assert error == 0, f"SaslHandshake PLAIN error {error}"
    token = b"\0alice\0alice-secret"
    s.sendall(request(SASL_AUTHENTICATE, 1, 2, struct.pack(">i", len(token)) + token))
    body = response(s, 2)
    (error,) = struct.unpack(">h", body[:2])
    assert error == 0, f"SaslAuthenticate error {error}: {body[2:80]!r}"
    # Metadata v4: all topics (null array), no auto-creation.
    s.sendall(request(METADATA, 4, 3, struct.pack(">ib", -1, 0)))
    body = response(s, 3)
    (throttle, brokers) = struct.unpack(">ii", body[:8])
    assert brokers >= 1, f"metadata lists {brokers} brokers"
    s.close()


def unsupported_mechanism():
    s = connect()
    error, mechs = handshake(s, "NOT-A-MECHANISM")
    assert error == 33, f"error code {error}, wanted 33 (UNSUPPORTED_SASL_MECHANISM)"
    assert set(mechs) == ENABLED and len(mechs) == len(ENABLED), f"mechanisms {mechs}"
    s.close()


def metadata_before_auth():
    s = connect()
    s.sendall(request(METADATA, 4, 1, struct.pack(">ib", -1, 0)))
    closed_without_response(s)


check("oversized (10 MiB) SaslAuthenticate before authentication: connection closed",
      oversized_authenticate)
check("a well-behaved SASL PLAIN client still works afterwards", well_behaved_client)
check("unsupported mechanism: UNSUPPORTED_SASL_MECHANISM (33) listing the enabled ones",
      unsupported_mechanism)
check("Metadata before authenticating: connection closed", metadata_before_auth)
print(f"hostile: {results['passed']} passed, {results['failed']} failed")
sys.exit(0 if results["failed"] == 0 else 1)
