"""Start / SIGKILL / restart / stop the server under test: a Shoal playground or a
throw-away Apache Kafka 4.3.1 (bench/kafka/start-kafka.sh). Both listen on 127.0.0.1 only
and cannot outlive the test: Shoal gets PR_SET_PDEATHSIG (it is SIGKILLed when the Python
process that started it dies), Kafka gets start-kafka.sh's watchdog (SHOAL_KAFKA_WATCH_PID =
this process, SHOAL_KAFKA_MAX_SECONDS as a hard limit).

(tests/compat/lost-ack/ imports this file too.)
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
        return True
    except OSError:
        return False


def die_with_parent():
    """preexec_fn: SIGKILL this child when the thread that started it exits."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ShoalServer:
    kind = "shoal"

    def __init__(self, binary, workdir, port, advertise=None, args=None):
        """`args`: the subcommand and its flags instead of a playground on `workdir`
        (e.g. `agent --metadata ...`); the listen address is added either way."""
        self.args = args
        self.binary = binary
        self.data_dir = os.path.join(workdir, "shoal-data")
        self.log_path = os.path.join(workdir, "shoal.log")
        self.port = port
        self.advertise = advertise
        self.proc = None
        self.bootstrap = f"127.0.0.1:{port}"

    def start(self, timeout=30):
        args = self.args or ["playground", "--data-dir", self.data_dir]
        cmd = [self.binary, *args, "--listen", f"127.0.0.1:{self.port}"]
        if self.advertise:
            cmd += ["--advertise", self.advertise]
        log = open(self.log_path, "ab")
        start_at = log.tell()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"shoal exited during startup (status {self.proc.returncode}); "
                                   f"see {self.log_path}")
            with open(self.log_path, "rb") as f:
                f.seek(start_at)
                ready = b"Shoal is listening" in f.read()
            if ready and port_open(self.port):
                return
            time.sleep(0.1)
        raise RuntimeError(f"shoal did not start listening within {timeout}s")

    def kill9(self):
        self.proc.kill()
        self.proc.wait(30)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, n=40):
        return tail(self.log_path, n)


class KafkaServer:
    kind = "kafka"

    def __init__(self, workdir, port, advertise=None, extra_props=(), max_seconds=600):
        self.data_dir = os.path.join(workdir, "kafka")
        self.log_path = os.path.join(self.data_dir, "kafka.log")
        self.port = port
        self.bootstrap = f"127.0.0.1:{port}"
        self.pid = None
        props = list(extra_props)
        if advertise:
            props.append(f"advertised.listeners=PLAINTEXT://{advertise}")
        self.env = dict(os.environ,
                        SHOAL_KAFKA_MAX_SECONDS=str(max_seconds),
                        SHOAL_KAFKA_WATCH_PID=str(os.getpid()),
                        # Same controller port across restarts (it is in the quorum config).
                        SHOAL_KAFKA_CONTROLLER_PORT=str(free_port()),
                        SHOAL_KAFKA_HEAP="512m",
                        SHOAL_KAFKA_EXTRA_PROPS="\n".join(props))

    def start(self, timeout=120):
        out = subprocess.run([os.path.join(ROOT, "bench/kafka/start-kafka.sh"), str(self.port),
                              self.data_dir], env=self.env, stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, timeout=timeout, check=True)
        self.pid = int(out.stdout.decode().strip().splitlines()[-1])

    def _alive(self):
        try:
            with open(f"/proc/{self.pid}/cmdline", "rb") as f:
                return b"kafka.Kafka" in f.read()
        except OSError:
            return False

    def kill9(self):
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.time() + 30
        while self._alive() and time.time() < deadline:
            time.sleep(0.05)

    def stop(self):
        if self.pid is None:
            return
        subprocess.run([os.path.join(ROOT, "bench/kafka/stop-kafka.sh"), self.data_dir],
                       stdin=subprocess.DEVNULL, timeout=60, check=False)

    def log_tail(self, n=40):
        return tail(self.log_path, n)


def tail(path, n):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
    except OSError as exc:
        return f"({path}: {exc})"


class Failed(Exception):
    """A check failed or the run was stopped; the message says why."""


def run(main, total_seconds):
    """Runs `main()` and exits with its status. SIGTERM, SIGINT and a safety alarm after
    `total_seconds` raise Failed (once) inside it, so its cleanup still runs."""

    def on_signal(signum, _frame):
        # Only once: the cleanup in main() must not be interrupted by a second signal.
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if signum == signal.SIGALRM:
            raise Failed(f"safety timeout of {total_seconds}s reached")
        raise Failed(f"killed by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_signal)
    signal.alarm(total_seconds)
    sys.exit(main())
