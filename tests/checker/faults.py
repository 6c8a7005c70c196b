"""The faults (the nemesis), each aimed at one target: an agent, etcd or MinIO.

Every fault runs in the main thread (it may restart processes: parent-death signals),
injects, holds for `hold` seconds, heals, and records each step with its time. The names:

  kill-agent  kill-etcd  kill-minio       SIGKILL, restart 3 s later (same port, same data)
  pause-agent pause-etcd pause-minio      SIGSTOP for `pause` seconds (default 15: longer than
                                          the 10 s registry lease), then SIGCONT
  partition-agent-etcd                    one agent's link to etcd cut (its proxy stops moving
                                          bytes; clients still reach the agent)
  partition-agent-minio                   one agent's link to MinIO cut
  partition-agent-agent                   the other agents cut from one agent's peer-cache
                                          endpoint (the only agent-to-agent link Shoal has)
  skew-agent                              one agent restarted with its wall clock off by
                                          `skew` seconds (libfaketime; + and - alternate),
                                          monotonic clock untouched; restarted unskewed after

A fault that cannot be run (no libfaketime) raises NotRun: the run reports it and fails.
"""

import os
import signal
import time

AGENT_FAULTS = ["kill-agent", "pause-agent", "partition-agent-etcd", "partition-agent-minio",
                "partition-agent-agent", "skew-agent"]
STORE_FAULTS = ["kill-etcd", "kill-minio", "pause-etcd", "pause-minio"]
ALL_FAULTS = ["kill-agent", "kill-etcd", "kill-minio", "pause-agent", "pause-etcd",
              "pause-minio", "partition-agent-etcd", "partition-agent-minio",
              "partition-agent-agent", "skew-agent"]

FAKETIME_PATHS = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                  "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                  "/usr/lib/faketime/libfaketime.so.1",
                  "/usr/local/lib/faketime/libfaketime.so.1"]


class _Notes:
    def __init__(self, note):
        self.append = note


class NotRun(Exception):
    """The fault could not be injected (a tool is missing)."""


def faketime_lib():
    for p in [os.environ.get("SHOAL_CHECKER_FAKETIME", "")] + FAKETIME_PATHS:
        if p and os.path.exists(p):
            return p
    return None


class Nemesis:
    def __init__(self, ctx, pause=15.0, skew=300):
        self.ctx = ctx  # .cluster, .servers, .agents, .proxies, .wait_agent_ready(a)
        self.pause = pause
        self.skew = skew
        self.skews = 0

    def target(self, fault, i):
        if fault.endswith("etcd") and fault.startswith(("kill", "pause")):
            return "etcd"
        if fault.endswith("minio") and fault.startswith(("kill", "pause")):
            return "minio"
        return self.ctx.agents[i % len(self.ctx.agents)].name

    def run(self, fault, target, hold, note):
        """Injects `fault` on `target`, holds, heals; `note(text)` records each step."""
        notes = _Notes(note)
        ctx = self.ctx
        if fault.startswith("kill-"):
            svc = self._service(target)
            svc.kill9()
            notes.append(f"SIGKILL {target}")
            time.sleep(3)
            self._restart(svc, notes)
        elif fault.startswith("pause-"):
            svc = self._service(target)
            os.kill(svc.pid, signal.SIGSTOP)
            notes.append(f"SIGSTOP {target} for {self.pause:.0f}s")
            try:
                time.sleep(self.pause)
            finally:
                os.kill(svc.pid, signal.SIGCONT)
            notes.append(f"SIGCONT {target}")
        elif fault.startswith("partition-agent-"):
            link = fault.rsplit("-", 1)[1]
            proxy = ctx.proxies[target][link]
            proxy.partition()
            notes.append(f"cut {target} <-> {link} for {hold:.0f}s")
            try:
                time.sleep(hold)
            finally:
                proxy.heal()
            notes.append(f"healed {target} <-> {link}")
        elif fault == "skew-agent":
            lib = faketime_lib()
            if lib is None:
                raise NotRun("libfaketime not found (apt-get install faketime)")
            sign = 1 if self.skews % 2 == 0 else -1
            self.skews += 1
            skew = sign * self.skew
            svc = self._service(target)
            svc.term(20)
            svc.faketime = (lib, skew)
            self._restart(svc, notes)
            notes.append(f"{target} restarted with its wall clock {skew:+d}s off")
            time.sleep(hold)
            svc.term(20)
            svc.faketime = None
            self._restart(svc, notes)
            notes.append(f"{target} restarted without skew")
        else:
            raise NotRun(f"unknown fault {fault}")

    def _service(self, target):
        if target == "etcd":
            return self.ctx.servers.etcd
        if target == "minio":
            return self.ctx.servers.minio
        return next(a for a in self.ctx.agents if a.name == target)

    def _restart(self, svc, notes):
        """Starts `svc` again; an agent refused (its id still leased) is retried until the
        old lease is gone (up to 40 s)."""
        deadline = time.time() + 40
        while True:
            try:
                svc.start(timeout=30)
                notes.append(f"restarted {svc.name}")
                return
            except Exception as exc:  # Failed: exited during startup
                if time.time() > deadline:
                    notes.append(f"could not restart {svc.name}: {str(exc)[:200]}")
                    raise
                time.sleep(2)
