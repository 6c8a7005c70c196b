"""Security checks with the Python clients: confluent-kafka (librdkafka) and kafka-python.

    python py_clients.py confluent|kafka-python SASL_SSL_BOOTSTRAP SSL_BOOTSTRAP CERT_DIR RECORDS

For the chosen client: produce RECORDS records as alice and read them back over SASL_SSL
with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN and over mutual TLS (alice's certificate), on
the topics run.sh created (sec-<client>-<mech>); a wrong password must fail with an
authentication error. confluent-kafka also checks that bob, denied on t1, gets
TOPIC_AUTHORIZATION_FAILED and no records. Prints `ok   NAME` / `FAIL NAME: why`, last line
`<client>-security: N passed, M failed`; exit code 1 when any failed.
"""

import os
import sys
import time
import traceback

CLIENT, SASL, SSL, CERTS, RECORDS = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
MECHS = [("SCRAM-SHA-256", "scram256"), ("SCRAM-SHA-512", "scram512"), ("PLAIN", "plain")]
WAIT = 30.0
results = {"passed": 0, "failed": 0}


def check(name, fn):
    try:
        fn()
        results["passed"] += 1
        print(f"ok   {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal
        results["failed"] += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
        if os.environ.get("SHOAL_COMPAT_VERBOSE") == "1":
            traceback.print_exc(file=sys.stdout)


def want(values):
    return [f"v{i}" for i in range(values)]


# ---------------------------------------------------------------- confluent-kafka (librdkafka)
def ck_sasl(mech, user, password):
    return {
        "bootstrap.servers": SASL,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mech,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": f"{CERTS}/ca.pem",
        "log_level": 0,  # failures are reported by the checks, not librdkafka's log
    }


def ck_mtls(user):
    return {
        "bootstrap.servers": SSL,
        "security.protocol": "SSL",
        "ssl.ca.location": f"{CERTS}/ca.pem",
        "ssl.certificate.location": f"{CERTS}/{user}.pem",
        "ssl.key.location": f"{CERTS}/{user}-key.pem",
        "log_level": 0,
    }


def ck_round_trip(conf, topic):
    from confluent_kafka import Consumer, Producer

    errors = []
    p = Producer({**conf, "acks": "all", "message.timeout.ms": 30000,
                  "error_cb": lambda e: errors.append(e)})
    delivered = []
    for i in range(RECORDS):
        p.produce(topic, key=f"k{i}", value=f"v{i}",
                  on_delivery=lambda err, msg: delivered.append(err))
    left = p.flush(WAIT)
    assert left == 0, f"{left} records not delivered; errors {errors}"
    assert delivered == [None] * RECORDS, f"delivery errors {[e for e in delivered if e][:3]}"
    c = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + WAIT
    while len(got) < RECORDS and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, f"consume error {m.error()}"
        got.append(m.value().decode())
    c.close()
    assert got == want(RECORDS), f"read {len(got)} of {RECORDS} records (first {got[:3]})"


def ck_wrong_password(mech):
    from confluent_kafka import KafkaError, Producer

    errors = []
    p = Producer({**ck_sasl(mech, "alice", "not-alices-password"),
                  "error_cb": lambda e: errors.append(e)})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not errors:
        p.poll(0.5)
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert auth, f"no authentication error, errors: {errors}"
    text = str(auth[0])
    assert "Authentication failed" in text or "SASL_AUTHENTICATION_FAILED" in text, text


def ck_bob_denied():
    from confluent_kafka import Consumer, KafkaError

    c = Consumer({**ck_sasl("SCRAM-SHA-512", "bob", "bob-secret"), "group.id": "sec-bob",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["t1"])
    records, codes = 0, set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and KafkaError.TOPIC_AUTHORIZATION_FAILED not in codes:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            codes.add(m.error().code())
        else:
            records += 1
    c.close()
    assert records == 0, f"bob read {records} records of t1"
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes, f"errors seen: {codes}"


# ---------------------------------------------------------------- kafka-python
def kp_sasl(mech, user, password):
    return dict(bootstrap_servers=SASL, security_protocol="SASL_SSL", sasl_mechanism=mech,
                sasl_plain_username=user, sasl_plain_password=password,
                ssl_cafile=f"{CERTS}/ca.pem")


def kp_mtls(user):
    return dict(bootstrap_servers=SSL, security_protocol="SSL", ssl_cafile=f"{CERTS}/ca.pem",
                ssl_certfile=f"{CERTS}/{user}.pem", ssl_keyfile=f"{CERTS}/{user}-key.pem")


def kp_round_trip(conf, topic):
    from kafka import KafkaConsumer, KafkaProducer

    p = KafkaProducer(acks="all", **conf)
    futures = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode()) for i in range(RECORDS)]
    for f in futures:
        f.get(timeout=WAIT)
    p.close()
    c = KafkaConsumer(topic, group_id=topic, auto_offset_reset="earliest",
                      enable_auto_commit=False, **conf)
    got = []
    deadline = time.monotonic() + WAIT
    while len(got) < RECORDS and time.monotonic() < deadline:
        for batch in c.poll(timeout_ms=500).values():
            got.extend(r.value.decode() for r in batch)
    c.close()
    assert got == want(RECORDS), f"read {len(got)} of {RECORDS} records (first {got[:3]})"


def kp_wrong_password(mech):
    """kafka-python 3 retries bootstrap and only logs why it failed: assert on that log."""
    import logging

    from kafka import KafkaAdminClient
    from kafka.errors import KafkaTimeoutError

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("kafka")
    handler = Keep(level=logging.ERROR)
    logger.addHandler(handler)
    try:
        a = KafkaAdminClient(bootstrap_timeout_ms=10000,
                             **kp_sasl(mech, "alice", "not-alices-password"))
        a.close()
        raise AssertionError("bootstrap succeeded with a wrong password")
    except KafkaTimeoutError:
        pass
    finally:
        logger.removeHandler(handler)
    auth = [m for m in seen if "SaslAuthenticationFailedError" in m or "Authentication failed" in m]
    assert auth, f"no authentication error among the client's errors: {seen[:3]}"


def main():
    short = {"confluent": "confluent", "kafka-python": "kafkapython"}[CLIENT]
    if CLIENT == "confluent":
        round_trip, sasl, mtls, wrong = ck_round_trip, ck_sasl, ck_mtls, ck_wrong_password
    else:
        round_trip, sasl, mtls, wrong = kp_round_trip, kp_sasl, kp_mtls, kp_wrong_password
    for mech, tag in MECHS:
        check(f"SASL_SSL {mech} produce and consume {RECORDS}",
              lambda m=mech, t=tag: round_trip(sasl(m, "alice", "alice-secret"), f"sec-{short}-{t}"))
    check(f"mutual TLS produce and consume {RECORDS}",
          lambda: round_trip(mtls("alice"), f"sec-{short}-mtls"))
    for mech, _ in MECHS:
        check(f"SASL_SSL {mech} wrong password: authentication failed", lambda m=mech: wrong(m))
    if CLIENT == "confluent":
        check("ACL: bob's consumer gets TOPIC_AUTHORIZATION_FAILED and no records", ck_bob_denied)
    print(f"{CLIENT}-security: {results['passed']} passed, {results['failed']} failed")
    sys.exit(0 if results["failed"] == 0 else 1)


if __name__ == "__main__":
    main()
