"""Run any command against a fresh Shoal cluster: one etcd, one MinIO, N `shoal agent`s
on loopback (the processes of tests/cluster/cluster.py).

    python3 tests/cluster/serve.py [--agents 3] [options] -- COMMAND ARGS...
    e.g. python3 tests/cluster/serve.py --agents 3 -- bash tests/compat/jvm/run.sh basic {bootstrap}

Starts etcd and MinIO (a bucket), then N agents (`--batch-timeout 50ms`, compaction and
everything else at their defaults, all in one agent group and no zone), waits until the
Metadata of every agent lists all N, and runs COMMAND with these placeholders replaced in
its arguments:

    {bootstrap}    every agent, comma-separated (`127.0.0.1:P1,127.0.0.1:P2,...`): for
                   clients that take a bootstrap.servers list (Java, librdkafka)
    {bootstrap1}   one agent only (agent0): for suites that take a single HOST:PORT
                   (franz-go's SeedBrokers, the Python suites' connection precheck); the
                   client still learns every agent from Metadata
    {agentK}       agent K's address (K from 0)

(also in the environment as SHOAL_CLUSTER_BOOTSTRAP and SHOAL_CLUSTER_BOOTSTRAP1). The
command's output goes straight to this process's stdout/stderr. When it ends, every agent
must still be running; all get one SIGTERM and must exit 0 within 20 s, and no agent log may
contain a panic. Then etcd and MinIO are stopped and the temporary directory removed.

Exit status: the command's (128+N if a signal N ended it) when non-zero; otherwise 1 if an
agent died, exited non-zero or panicked (or the cluster did not come up); else 0. Lines of
this script start with `serve:`; the last says what happened.

Options: --shoal BIN (target/debug/shoal), --etcd BIN, --minio BIN (found on PATH or in
`go env GOPATH`/bin), --batch-timeout (50ms), --seconds S (time limit for the whole run,
default $SERVE_SECONDS or 1200: the command is then stopped and the run fails), --keep (or
CLUSTER_KEEP=1: keep logs and data; the directory is printed), --workdir DIR, --name NAME
(etcd and bucket prefix, default `serve`), --agent-arg ARG (repeatable, added to every
agent's command line).

Nothing outlives it: etcd, MinIO and the agents get a parent-death signal (cluster.py); the
command runs in a session of its own, and every process of that session is SIGTERMed then
SIGKILLed when the run ends for any reason (signal, time limit, the command's end), and a
watchdog does the same and exits if the cleanup itself hangs.
"""

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cluster import ROOT, SETPRIV, Cluster, Failed, Servers, tail  # noqa: E402


def say(text):
    print(f"serve: {text}", flush=True)


# ------------------------------------------------------------------ Metadata (raw, v1)

def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return buf


def metadata_brokers(address, timeout=5.0):
    """Sorted ['host:port'] of the brokers in a Metadata v1 answer from `address` (no
    topics asked). Plain sockets: no client library needed."""
    host, _, port = address.rpartition(":")
    client_id = b"shoal-cluster-serve"
    body = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read_exact(s, 4))[0]
        data = _read_exact(s, size)
    pos = 4  # correlation id
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    out = []
    for _ in range(count):
        pos += 4  # node id
        (hlen,) = struct.unpack_from(">h", data, pos)
        pos += 2
        h = data[pos:pos + hlen].decode()
        pos += hlen
        (p,) = struct.unpack_from(">i", data, pos)
        pos += 4
        (rlen,) = struct.unpack_from(">h", data, pos)
        pos += 2 + max(rlen, 0)
        out.append(f"{h}:{p}")
    return sorted(out)


def wait_all_listed(agents, timeout):
    """Until the Metadata of every agent lists exactly every agent; raises Failed."""
    want = sorted(a.address for a in agents)
    deadline = time.time() + timeout
    for a in agents:
        seen = None
        while True:
            try:
                seen = metadata_brokers(a.address)
                if seen == want:
                    break
            except (OSError, struct.error, ValueError) as exc:
                seen = f"error: {exc}"
            if time.time() > deadline:
                raise Failed(f"Metadata from {a.name} ({a.address}) does not list all "
                             f"{len(want)} agents {want} after {timeout}s; saw {seen}")
            time.sleep(0.3)


# ------------------------------------------------------------------ the command's session

def session_pids(sid):
    """Pids of every process whose session id is `sid`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # state ppid pgrp session ...; zombies are gone already (only not reaped yet)
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(name))
    return out


def signal_session(sid, sig):
    n = 0
    for pid in session_pids(sid):
        try:
            os.kill(pid, sig)
            n += 1
        except OSError:
            pass
    return n


def end_session(sid, grace=10.0):
    """SIGTERM every process of the session, SIGKILL what is left after `grace` s."""
    if not signal_session(sid, signal.SIGTERM):
        return
    deadline = time.time() + grace
    while time.time() < deadline and session_pids(sid):
        time.sleep(0.2)
    if signal_session(sid, signal.SIGKILL):
        say(f"SIGKILLed what was left of the command's processes after {grace:.0f}s")


class Interrupted(BaseException):
    pass


# ------------------------------------------------------------------ main
def check_agents(cl, state, problems, cmd_rc):
    """After the command: each agent's figures, then every agent must still run, exit 0 on
    one SIGTERM and have no panic in its log; adds to `problems`, prints log excerpts."""
    n_before = len(problems)
    # What each agent did: the load must not all have gone to one of them.
    for a in cl.agents:
        m = a.metrics() if a.alive() else {}
        if m:
            say(f"{a.name}: " + ", ".join(
                f"{int(m.get(k, 0))} {label}" for k, label in (
                    ("shoal_requests_total", "requests"),
                    ("shoal_connections_total", "connections"),
                    ("shoal_produced_batches_total", "batches produced"),
                    ("shoal_flushes_total", "flushes"),
                    ("shoal_commit_errors_total", "commit errors"),
                    ("shoal_protocol_errors_total", "protocol errors"))))
    dead = [f"{a.name} (status {a.proc.returncode})" for a in cl.agents
            if a.proc is not None and not a.alive()]
    if dead and not state.get("signalled"):  # (a signal to our process group stops them too)
        problems.append(f"agents not running when the command ended: {', '.join(dead)}")
    results = cl.stop(timeout=20)
    bad = {n: r[0] for n, r in results.items() if r[0] != 0}
    slow = max((r[1] for r in results.values()), default=0.0)
    if bad:
        problems.append(f"SIGTERM: agents not exiting 0 (None = SIGKILLed after 20 s): {bad}")
    elif results:
        say(f"SIGTERM: {len(results)} agents exited 0 (slowest {slow:.1f}s)")
    panicked = [a.name for a in cl.agents if "panicked" in a.log_text()]
    if panicked:
        problems.append(f"panic in the log of {', '.join(panicked)}")
    if problems or (cmd_rc not in (0, None)):
        for a in cl.agents:
            lines = [line for line in a.log_text().splitlines()
                     if " ERROR " in line or " WARN " in line or "panicked" in line]
            print(f"--- {a.name} ({a.address}) {a.log_path}: {len(lines)} WARN/ERROR/panic "
                  f"lines" + (", the last 10:" if lines else ""), flush=True)
            for line in lines[-10:]:
                print(f"    {line[:400]}", flush=True)
            if len(problems) > n_before:  # an agent problem
                print(f"--- last 15 lines of {a.log_path}\n{a.tail(15)}", flush=True)


def default_minio():
    found = shutil.which("minio")
    if found:
        return found
    try:
        gopath = subprocess.run(["go", "env", "GOPATH"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, timeout=30).stdout.decode().strip()
    except (OSError, subprocess.SubprocessError):
        gopath = os.path.expanduser("~/go")
    return os.path.join(gopath or os.path.expanduser("~/go"), "bin", "minio")


def substitute(args, agents):
    values = {"bootstrap": ",".join(a.address for a in agents),
              "bootstrap1": agents[0].address}
    for i, a in enumerate(agents):
        values[f"agent{i}"] = a.address
    out = []
    for arg in args:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out, values


def main():
    ap = argparse.ArgumentParser(description="Run a command against a fresh N-agent Shoal "
                                             "cluster (etcd + MinIO) on loopback.")
    ap.add_argument("--agents", type=int, default=3)
    ap.add_argument("--shoal", default=os.path.join(ROOT, "target", "debug", "shoal"))
    ap.add_argument("--etcd", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--minio", default=None)
    ap.add_argument("--batch-timeout", default="50ms")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("SERVE_SECONDS", 1200)))
    ap.add_argument("--keep", action="store_true", default=os.environ.get("CLUSTER_KEEP") == "1")
    ap.add_argument("--workdir")
    ap.add_argument("--name", default="serve")
    ap.add_argument("--agent-arg", action="append", default=[])
    ap.add_argument("command", nargs=argparse.REMAINDER)
    opts = ap.parse_args()
    cmd = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not cmd:
        ap.error("no command given (after --)")
    if opts.agents < 1:
        ap.error("--agents must be at least 1")
    shoal = os.path.abspath(opts.shoal)
    if not os.access(shoal, os.X_OK):
        say(f"no shoal binary at {shoal}; run 'cargo build -p shoal' first")
        return 2
    minio = opts.minio or default_minio()
    for what, path in (("etcd", opts.etcd), ("minio", minio)):
        if not (os.access(path, os.X_OK) or shutil.which(path)):
            say(f"no {what} binary ({path}); tests/cluster/run.sh installs both")
            return 2

    state = {"stop": None, "sid": None}
    t_start = time.time()

    def on_signal(signum, _frame):
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        state["signalled"] = signum != signal.SIGALRM
        state["stop"] = (f"time limit of {opts.seconds}s reached" if signum == signal.SIGALRM
                         else f"stopped by signal {signum}")
        raise Interrupted(state["stop"])

    def watchdog():
        time.sleep(opts.seconds + 60)
        say(f"hard limit {opts.seconds + 60}s reached (cleanup hung?), exiting")
        if state["sid"]:
            signal_session(state["sid"], signal.SIGKILL)
        os._exit(3)  # etcd, MinIO and the agents die with us (parent-death signal)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(opts.seconds)
    threading.Thread(target=watchdog, daemon=True).start()

    servers = Servers(shoal, minio, opts.etcd, keep=opts.keep, workdir=opts.workdir)
    cl = None
    proc = None
    cmd_rc = None
    problems = []
    try:
        took = servers.start()
        say(f"etcd on {servers.etcd.endpoint}, MinIO on {servers.minio.endpoint} "
            f"(bucket {servers.minio.bucket}) up in {took:.1f}s")
        cl = Cluster(servers, opts.name, batch_timeout=opts.batch_timeout)
        for _ in range(opts.agents):
            cl.add_agent(extra=opts.agent_arg)
        t0 = time.time()
        cl.start_all(timeout=60)
        wait_all_listed(cl.agents, 60)
        say(f"{opts.agents} agents up, every agent's Metadata lists all {opts.agents} in "
            f"{time.time() - t0:.1f}s: " + ", ".join(f"{a.name}={a.address}" for a in cl.agents))

        args, values = substitute(cmd, cl.agents)
        env = dict(os.environ, SHOAL_CLUSTER_BOOTSTRAP=values["bootstrap"],
                   SHOAL_CLUSTER_BOOTSTRAP1=values["bootstrap1"])
        say(f"running: {' '.join(args)}")
        sys.stdout.flush()
        sys.stderr.flush()
        t_cmd = time.time()
        popen = [SETPRIV, "--pdeathsig", "KILL", "--"] + args if SETPRIV else args
        proc = subprocess.Popen(popen, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        state["sid"] = proc.pid
        cmd_rc = proc.wait()
        say(f"command exited with status {cmd_rc} after {time.time() - t_cmd:.1f}s")
    except Interrupted as exc:
        problems.append(str(exc))
    except Failed as exc:
        problems.append(f"cluster setup: {exc}")
    except Exception as exc:  # noqa: BLE001 - reported, then cleaned up
        problems.append(f"unexpected error: {exc!r}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if state["sid"]:
            end_session(state["sid"])  # the command, or what it left behind
            if proc is not None and cmd_rc is None:
                try:
                    cmd_rc = proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                say(f"command stopped ({problems[-1] if problems else 'interrupted'}); "
                    f"status {cmd_rc}")
        try:
            if cl is not None:
                check_agents(cl, state, problems, cmd_rc)
        except Exception as exc:  # noqa: BLE001 - the cleanup below must still run
            problems.append(f"checking the agents: {exc!r}")
        if problems and cl is None:
            for s in (servers.etcd, servers.minio):
                print(f"--- last 15 lines of {s.log_path}\n{tail(s.log_path, 15)}", flush=True)
        servers.close()

    for p in problems:
        say(f"FAILED: {p}")
    if cmd_rc is not None and cmd_rc < 0:
        cmd_rc = 128 - cmd_rc
    total = time.time() - t_start
    if cmd_rc not in (0, None):
        rc = cmd_rc
    elif problems:
        rc = 1
    else:
        rc = 0
    say(f"{'ok' if rc == 0 else 'failed'}: command status {cmd_rc}, "
        f"{len(problems)} cluster problem(s), {total:.0f}s in all")
    return rc


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
