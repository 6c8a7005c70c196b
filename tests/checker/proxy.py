"""A TCP fault proxy: one per link to partition (agent -> etcd, agent -> MinIO).

`Proxy(target_port)` listens on a free loopback port and forwards every connection to
127.0.0.1:target_port, one thread per direction. `partition()` stops the proxy moving
bytes: no direction is read any more (so the kernel buffers fill and the senders stall,
as with packets lost on a cut link: TCP keeps the connection and retransmits), and new
connections are accepted but not connected onwards. `heal()` lets everything flow again;
nothing is lost or reordered, so a stream that survives the partition stays intact.
`reset()` closes every open connection (as a peer's RST would) and is used by nothing but
the `partition` faults' optional hard variant.

Threads only, no processes: proxies live in the checker's own process and die with it.
"""

import select
import socket
import threading

from servers import free_port  # tests/compat/txn-restart (on sys.path via cluster.py)


class Proxy:
    def __init__(self, name, target_port, target_host="127.0.0.1", port=None):
        self.name = name
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.open = threading.Event()  # set: bytes flow; clear: partitioned
        self.open.set()
        self.lock = threading.Lock()
        self.conns = set()  # (client socket, upstream socket or None)
        self.closed = False
        self.accepted = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(128)
        threading.Thread(target=self._accept, name=f"proxy-{name}", daemon=True).start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def partitioned(self):
        return not self.open.is_set()

    def partition(self):
        self.open.clear()

    def heal(self):
        self.open.set()

    def reset(self):
        with self.lock:
            conns = list(self.conns)
            self.conns.clear()
        for pair in conns:
            for s in pair:
                _close(s)

    def close(self):
        self.closed = True
        self.open.set()
        _close(self.listener)
        self.reset()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client):
        # A connection made during a partition hangs until it heals (as a SYN to a cut
        # host is retransmitted); the client's own timeout decides when it gives up.
        while not self.open.wait(0.2):
            if self.closed:
                _close(client)
                return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            _close(client)  # the target is down (killed): refuse as it would
            return
        pair = (client, upstream)
        with self.lock:
            self.conns.add(pair)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(src, dst, pair), daemon=True).start()

    def _pipe(self, src, dst, pair):
        try:
            while not self.closed:
                if not self.open.is_set():
                    self.open.wait(0.2)
                    continue
                ready, _, _ = select.select([src], [], [], 0.2)
                if not ready:
                    continue
                if not self.open.is_set():
                    continue  # partitioned between the select and now: read nothing
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):
            pass  # closed: by the other direction's thread (fd -1), reset() or the peer
        finally:
            with self.lock:
                self.conns.discard(pair)
            for s in pair:
                _close(s)


def _close(s):
    if s is None:
        return
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
