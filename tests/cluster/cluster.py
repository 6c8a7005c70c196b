"""Processes of a Shoal cluster on loopback: one etcd, one MinIO, N `shoal agent`s.

Everything listens on 127.0.0.1 only, on ports picked free at start (a restarted process
gets its old port and directory back), runs in one temporary directory, and writes its own
log file there. Nothing can outlive the test:

  - every child is started with a parent-death signal (`setpriv --pdeathsig KILL`, or
    prctl(PR_SET_PDEATHSIG) when setpriv is missing): it is SIGKILLed when the thread that
    started it ends. So START PROCESSES FROM THE MAIN THREAD ONLY (client threads may run
    while the main thread kills and restarts servers);
  - `Cluster.close()` stops everything and is also registered with atexit;
  - `run()` turns SIGTERM, SIGINT and a SIGALRM deadline into `Failed` inside the main
    thread (so `finally:` blocks clean up), and a watchdog thread hard-exits the process
    20 s after the deadline if the main thread is stuck in C code.

Agents take the cluster command line of DESIGN.md / issue 5:
  shoal agent --metadata etcd://127.0.0.1:P/PREFIX --object-store s3://BUCKET/PREFIX
              --listen A --advertise A --metrics-listen M --batch-timeout 50ms
              [--az Z] [--agent-group G] [--roles R]
with AWS_* pointing at the MinIO. `metadata="sqlite"` (the suite's --selftest-sqlite) runs a
single agent on SQLite instead, with no cluster flags: only for checking the harness itself
with a binary that has no etcd backend yet.
"""

import atexit
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

# Seconds an agent that left the registry is still listed by the others
# (--departed-agent-grace) in the suite's clusters.
DEPARTED_GRACE = 3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
# Small helpers shared with tests/compat/txn-restart and lost-ack.
sys.path.insert(0, os.path.join(ROOT, "tests", "compat", "txn-restart"))
from servers import Failed, die_with_parent, free_port, port_open, tail  # noqa: E402

SETPRIV = shutil.which("setpriv")


class Stop(BaseException):
    """The run is being stopped (signal or overall time limit). Not an Exception, so the
    tests' `except Exception` clauses cannot swallow it."""
ANSI = None


def strip_ansi(text):
    global ANSI
    if ANSI is None:
        import re
        ANSI = re.compile(r"\x1b\[[0-9;]*m")
    return ANSI.sub("", text)


def now():
    return time.strftime("%H:%M:%S")


class Service:
    """One child process with its own log file (appended to across restarts)."""

    def __init__(self, name, workdir):
        self.name = name
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.proc = None
        self.starts = 0
        self.log_offset = 0
        self.last_exit = None
        self.term_sent_at = None

    # subclasses: command(), env(), ready()
    def env(self):
        return dict(os.environ)

    def _spawn(self):
        cmd = self.command()
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"==== harness: start #{self.starts} of {self.name} at {now()}: "
                      f"{' '.join(cmd)}\n".encode())
            log.flush()
            self.log_offset = log.tell()
            if SETPRIV:
                self.proc = subprocess.Popen([SETPRIV, "--pdeathsig", "KILL", "--"] + cmd,
                                             stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=self.env(),
                                             cwd=self.workdir)
            else:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=self.env(),
                                             cwd=self.workdir, preexec_fn=die_with_parent)
        self.last_exit = None
        self.term_sent_at = None

    def start(self, timeout=30):
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("start processes from the main thread (parent-death signal)")
        if self.alive():
            raise RuntimeError(f"{self.name} is already running")
        self._spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.last_exit = self.proc.returncode
                raise Failed(f"{self.name} exited during startup (status {self.proc.returncode}); "
                             f"log:\n{self.startup_log()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise Failed(f"{self.name} not ready within {timeout}s; log:\n{self.startup_log()}")

    def startup_log(self, head=12, tail_lines=6):
        """The log since the last start: its first lines (the error, before any
        backtrace) and its last."""
        lines = self.log_text(since_start=True).splitlines()
        if len(lines) <= head + tail_lines:
            return "\n".join(lines)
        return "\n".join(lines[:head] + [f"    [... {len(lines) - head - tail_lines} lines]"]
                         + lines[-tail_lines:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def kill9(self):
        if not self.alive():
            return
        self.proc.kill()  # setpriv execs the command: this is the server's own pid
        self.proc.wait(30)
        self.last_exit = self.proc.returncode
        self._note(f"killed with SIGKILL at {now()}")

    def term(self, timeout=20, send=True):
        """SIGTERM (unless `send` is False: already sent); returns (exit status, or None
        if it had to be SIGKILLed after `timeout` seconds; seconds taken)."""
        if self.proc is None:
            return None, 0.0
        if send or self.term_sent_at is None:
            if self.proc.poll() is not None:
                self.last_exit = self.proc.returncode
                return self.last_exit, 0.0
            self.term_sent_at = time.time()
            self.proc.send_signal(signal.SIGTERM)
        t0 = self.term_sent_at
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            rc = None
        self.last_exit = self.proc.returncode
        took = time.time() - t0
        self.term_sent_at = None
        self._note(f"stopped with SIGTERM at {now()}: status {self.last_exit} after {took:.1f}s")
        return rc, took

    def _note(self, text):
        try:
            with open(self.log_path, "ab") as log:
                log.write(f"==== harness: {self.name} {text}\n".encode())
        except OSError:
            pass

    def log_text(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self.log_offset)
                return strip_ansi(f.read().decode(errors="replace"))
        except OSError:
            return ""

    def tail(self, n=30):
        return strip_ansi(tail(self.log_path, n))


class Etcd(Service):
    def __init__(self, workdir, binary="etcd"):
        super().__init__("etcd", workdir)
        self.binary = binary
        self.port = free_port()
        self.peer_port = free_port()
        self.data_dir = os.path.join(workdir, "etcd-data")
        self.endpoint = f"127.0.0.1:{self.port}"

    def command(self):
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"http://{self.endpoint}"
        # Default etcd settings otherwise (--max-txn-ops 128, --max-request-bytes 1.5 MiB):
        # those are what a production etcd has.
        return [self.binary, "--name", "default", "--data-dir", self.data_dir,
                "--logger", "zap", "--log-outputs", "stderr",
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"default={peer}"]

    def env(self):
        env = dict(os.environ)
        if os.uname().machine in ("aarch64", "arm64"):
            env["ETCD_UNSUPPORTED_ARCH"] = "arm64"  # etcd 3.4 refuses to start otherwise
        return env

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def keys(self, prefix=b""):
        """Every key (bytes) starting with `prefix`, through etcd's JSON gateway."""
        start = prefix or b"\0"
        if prefix:
            end = bytearray(prefix)
            while end and end[-1] == 0xFF:
                end.pop()
            end[-1] += 1
            end = bytes(end)
        else:
            end = b"\0"
        body = json.dumps({"key": base64.b64encode(start).decode(),
                           "range_end": base64.b64encode(end).decode(),
                           "keys_only": True}).encode()
        req = urllib.request.Request(f"http://{self.endpoint}/v3/kv/range", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            out = json.loads(r.read())
        return [base64.b64decode(kv["key"]) for kv in out.get("kvs", [])]


class MinIO(Service):
    def __init__(self, workdir, binary):
        super().__init__("minio", workdir)
        self.binary = binary
        self.port = free_port()
        self.console_port = free_port()
        self.data_dir = os.path.join(workdir, "minio-data")
        self.certs_dir = os.path.join(workdir, "minio-certs")
        os.makedirs(self.certs_dir, exist_ok=True)
        self.key = "shoal-cluster-key"
        self.secret = f"shoal-cluster-secret-{os.getpid()}-{int(time.time())}"
        self.region = "us-east-1"
        self.bucket = "shoal-cluster"
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def command(self):
        return [self.binary, "server", self.data_dir, "--quiet",
                "--address", f"127.0.0.1:{self.port}",
                "--console-address", f"127.0.0.1:{self.console_port}",
                "--certs-dir", self.certs_dir]

    def env(self):
        return dict(os.environ, MINIO_ROOT_USER=self.key, MINIO_ROOT_PASSWORD=self.secret,
                    MINIO_UPDATE="off")

    def ready(self):
        try:
            with urllib.request.urlopen(f"{self.endpoint}/minio/health/live", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def s3(self, *args):
        """A SigV4-signed request with curl (as tests/s3/run.sh); returns stdout."""
        out = subprocess.run(["curl", "-fsS", "--max-time", "20", "--user",
                              f"{self.key}:{self.secret}", "--aws-sigv4",
                              f"aws:amz:{self.region}:s3", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, timeout=30)
        if out.returncode != 0:
            raise Failed(f"S3 request {args} failed: {out.stderr.decode(errors='replace')} "
                         f"{out.stdout.decode(errors='replace')[:500]}")
        return out.stdout.decode(errors="replace")

    def create_bucket(self, timeout=60):
        """Creates the bucket. A MinIO that answers its liveness probe may still answer 503
        (it has not finished initialising, which takes seconds on a loaded machine): that
        is retried until `timeout`; any other failure is not."""
        deadline = time.time() + timeout
        while True:
            try:
                self.s3("-X", "PUT", f"{self.endpoint}/{self.bucket}")
                return
            except Failed as e:
                if "returned error: 503" not in str(e) or time.time() > deadline:
                    raise
            time.sleep(0.5)

    def list_keys(self, prefix):
        """Keys under `prefix/` (first 1000; enough to show objects are there)."""
        import re
        # curl signs the query string as written: sorted parameters, '/' as %2F.
        xml = self.s3(f"{self.endpoint}/{self.bucket}?list-type=2&prefix="
                      f"{urllib.request.quote(prefix + '/', safe='')}")
        return re.findall(r"<Key>([^<]*)</Key>", xml)

    def list_objects(self, prefix):
        """[(key, size in bytes)] of every object under `prefix/` (all pages)."""
        import re
        out, token = [], None
        for _ in range(1000):
            # Parameters in sorted order, each percent-encoded: curl signs the query as written.
            query = (f"continuation-token={urllib.request.quote(token, safe='')}&" if token else "") \
                + f"list-type=2&prefix={urllib.request.quote(prefix + '/', safe='')}"
            xml = self.s3(f"{self.endpoint}/{self.bucket}?{query}")
            for entry in re.findall(r"<Contents>(.*?)</Contents>", xml, re.S):
                key = re.search(r"<Key>([^<]*)</Key>", entry).group(1)
                out.append((key, int(re.search(r"<Size>(\d+)</Size>", entry).group(1))))
            more = re.search(r"<IsTruncated>true</IsTruncated>", xml)
            token = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", xml)
            if not more or not token:
                return out
            token = token.group(1)
        raise Failed(f"listing {prefix}/ did not end after 1000 pages")

    def agent_env(self):
        env = {k: v for k, v in os.environ.items() if k not in ("AWS_SESSION_TOKEN", "AWS_PROFILE")}
        env.update(AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret,
                   AWS_REGION=self.region, AWS_ENDPOINT_URL=self.endpoint)
        return env


class Agent(Service):
    def __init__(self, cluster, name, az=None, group=None, roles=None, extra=()):
        super().__init__(name, os.path.join(cluster.workdir, name))
        self.cluster = cluster
        self.az, self.group, self.roles = az, group, roles
        self.extra = list(extra)
        self.port = free_port()
        self.metrics_port = free_port()
        self.address = f"127.0.0.1:{self.port}"

    def command(self):
        c = self.cluster
        if c.metadata == "sqlite":
            meta = f"sqlite://{os.path.join(c.workdir, 'meta.db')}"
        else:
            meta = f"etcd://{c.etcd.endpoint}/{c.prefix}"
        cmd = [c.binary, "agent", "--metadata", meta,
               "--object-store", f"s3://{c.minio.bucket}/{c.prefix}",
               "--listen", self.address, "--advertise", self.address,
               "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
               "--batch-timeout", c.batch_timeout]
        if self.az is not None:
            cmd += ["--az", self.az]
        if self.group is not None:
            cmd += ["--agent-group", self.group]
        if self.roles is not None:
            cmd += ["--roles", self.roles]
        return cmd + self.extra

    def env(self):
        env = self.cluster.minio.agent_env()
        env.setdefault("SHOAL_LOG", "info")
        # A departed agent stays listed (leading nothing) this long; the suite checks
        # that it leaves Metadata, so it keeps that short (the default is 60 s).
        env.setdefault("SHOAL_DEPARTED_AGENT_GRACE", f"{DEPARTED_GRACE}s")
        return env

    def ready(self):
        text = self.log_text(since_start=True)
        return "Shoal is listening" in text and port_open(self.port)

    def wait_ready(self, timeout):
        try:
            super().wait_ready(timeout)
        except Failed as exc:
            text = self.log_text(since_start=True)
            said = [line.strip() for line in text.splitlines() if "not built" in line]
            if said and "etcd" in said[0]:
                raise Failed(f"this shoal binary has no etcd metadata backend yet "
                             f"({self.cluster.binary}): {said[0]}") from None
            if "unexpected argument" in text:
                raise Failed(f"this shoal binary lacks a cluster flag: "
                             f"{text.strip().splitlines()[0] if text.strip() else ''}\n"
                             f"{self.tail(10)}") from None
            raise exc

    def metrics(self):
        """{'name{labels}': value} from /metrics, or {} when unreachable."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                        timeout=3) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def __repr__(self):
        bits = [self.name, self.address]
        if self.az:
            bits.append(f"az={self.az}")
        if self.group:
            bits.append(f"group={self.group}")
        return "<" + " ".join(bits) + ">"


class Cluster:
    """One test's cluster: its agents share etcd prefix PREFIX and s3://BUCKET/PREFIX.
    The etcd and MinIO (`Servers`) are shared between tests."""

    def __init__(self, servers, prefix, batch_timeout="50ms"):
        self.servers = servers
        self.binary = servers.binary
        self.metadata = servers.metadata
        self.etcd, self.minio = servers.etcd, servers.minio
        self.prefix = prefix
        self.batch_timeout = batch_timeout
        self.workdir = os.path.join(servers.workdir, prefix)
        os.makedirs(self.workdir, exist_ok=True)
        self.agents = []
        servers.clusters.append(self)

    def add_agent(self, name=None, **kw):
        a = Agent(self, name or f"agent{len(self.agents)}", **kw)
        self.agents.append(a)
        return a

    def start_all(self, timeout=40, only=None):
        """Starts every agent not running (of `only`, if given), all at once, then waits
        for each."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("start processes from the main thread")
        todo = [a for a in (self.agents if only is None else only) if not a.alive()]
        for a in todo:
            a._spawn()
        for a in todo:
            a.wait_ready(timeout)

    def live(self):
        return [a for a in self.agents if a.alive()]

    def by_address(self, address):
        for a in self.agents:
            if a.address == address:
                return a
        return None

    def stop(self, timeout=20):
        """SIGTERM every live agent; returns {name: (status, seconds)}."""
        out = {}
        live = self.live()
        for a in live:
            a.term_sent_at = time.time()
            a.proc.send_signal(signal.SIGTERM)
        for a in live:
            out[a.name] = a.term(timeout, send=False)  # one SIGTERM each, then wait
        return out

    def kill_all(self):
        for a in self.agents:
            try:
                a.kill9()
            except Exception:
                pass

    def log_tails(self, n=30):
        parts = []
        for a in self.agents:
            parts.append(f"--- last {n} lines of {a.log_path}\n{a.tail(n)}")
        return "\n".join(parts)


class Servers:
    """The shared etcd and MinIO, the temporary directory, and cleanup."""

    def __init__(self, binary, minio_binary, etcd_binary="etcd", metadata="etcd", keep=False,
                 workdir=None):
        self.binary = binary
        self.metadata = metadata
        self.keep = keep
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            self.workdir = os.path.abspath(workdir)
        else:
            self.workdir = tempfile.mkdtemp(prefix="shoal-cluster.")
        self.etcd = Etcd(self.workdir, etcd_binary)
        self.minio = MinIO(self.workdir, minio_binary)
        self.clusters = []
        self.client_log = os.path.join(self.workdir, "clients.log")
        self.closed = False
        atexit.register(self.close)

    def start(self):
        t0 = time.time()
        self.etcd._spawn()
        self.minio._spawn()
        self.etcd.wait_ready(30)
        self.minio.wait_ready(60)
        self.minio.create_bucket()
        return time.time() - t0

    def close(self):
        if self.closed:
            return
        self.closed = True
        for c in self.clusters:
            for a in c.agents:
                if a.alive():
                    try:
                        a.term(5)
                    except Exception:
                        a.kill9()
        for s in (self.minio, self.etcd):
            try:
                if s.alive():
                    s.term(10)
            except Exception:
                pass
        if self.keep:
            print(f"cluster: logs and data kept in {self.workdir}", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tails(self, n=30, agents=True):
        parts = []
        if agents:
            for c in self.clusters:
                parts.append(c.log_tails(n))
        for s in (self.etcd, self.minio):
            parts.append(f"--- last {n // 2} lines of {s.log_path}\n{s.tail(n // 2)}")
        parts.append(f"--- last {n // 2} lines of {self.client_log}\n{strip_ansi(tail(self.client_log, n // 2))}")
        return "\n".join(parts)


def run(main, total_seconds):
    """Runs `main()` and exits the process with its status. SIGTERM, SIGINT and an alarm
    after `total_seconds` raise Stop (once) in the main thread, so its cleanup runs; a
    watchdog exits hard 20 s later if that cleanup hangs (atexit handlers included)."""

    def on_signal(signum, _frame):
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if signum == signal.SIGALRM:
            raise Stop(f"overall time limit of {total_seconds}s reached")
        raise Stop(f"stopped by signal {signum}")

    def watchdog():
        time.sleep(total_seconds + 20)
        print(f"cluster: failed: hard limit {total_seconds + 20}s, exiting", flush=True)
        # Our children die with us (parent-death signal).
        os._exit(3)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(total_seconds)
    threading.Thread(target=watchdog, daemon=True).start()
    try:
        rc = main()
    except (Failed, Stop) as exc:
        print(f"cluster: failed: {exc}", flush=True)
        rc = 1
    # atexit handlers (Servers.close) then a hard exit: librdkafka threads left in client
    # objects must not hold the interpreter's shutdown.
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
