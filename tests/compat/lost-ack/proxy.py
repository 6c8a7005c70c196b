"""A Kafka-protocol TCP proxy that loses acknowledgements of Produce requests.

Every client connection gets its own upstream connection to the server. Frames are
parsed in both directions (4-byte big-endian length prefix; request header api_key int16,
api_version int16, correlation_id int32; response header starts with correlation_id int32)
and forwarded unchanged, except: every `drop_every`-th Produce request (api_key 0) that
expects a response (acks != 0) is forwarded to the server, the server's response to it is
thrown away, and both connections are closed. The server has appended the records; the
client never learns it, so it has to retry them.

Runs an asyncio loop in a background thread: Proxy(listen_port, upstream_port).start().
"""

import asyncio
import struct
import threading

PRODUCE = 0


def _varint(buf, pos):
    """Unsigned varint at buf[pos:] -> (value, new_pos)."""
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def parse_produce(body):
    """(acks, batches) of a Produce request (body = frame without the length prefix);
    batches = [(topic, partition, producer_id, producer_epoch, base_sequence, count)] from
    the v2 record batch headers. (None, []) when the request cannot be parsed."""
    try:
        _, version = struct.unpack_from(">hh", body, 0)
        pos = 8
        (client_id_len,) = struct.unpack_from(">h", body, pos)  # header: nullable string
        pos += 2 + max(client_id_len, 0)
        flexible = version >= 9
        if flexible:  # request header v2: tagged fields
            pos = _skip_tags(body, pos)
        if version >= 3:  # transactional_id
            if flexible:
                n, pos = _varint(body, pos)  # compact nullable string: length + 1
                pos += max(n - 1, 0)
            else:
                (n,) = struct.unpack_from(">h", body, pos)
                pos += 2 + max(n, 0)
        (acks,) = struct.unpack_from(">h", body, pos)
        pos += 2 + 4  # acks, timeout_ms
        batches = []
        n_topics, pos = _array_len(body, pos, flexible)
        for _ in range(n_topics):
            if version >= 13:  # topic id
                topic = body[pos:pos + 16].hex()
                pos += 16
            elif flexible:
                n, pos = _varint(body, pos)
                topic = body[pos:pos + n - 1].decode()
                pos += n - 1
            else:
                (n,) = struct.unpack_from(">h", body, pos)
                topic = body[pos + 2:pos + 2 + n].decode()
                pos += 2 + n
            n_parts, pos = _array_len(body, pos, flexible)
            for _ in range(n_parts):
                (partition,) = struct.unpack_from(">i", body, pos)
                pos += 4
                if flexible:
                    n, pos = _varint(body, pos)
                    size = n - 1
                else:
                    (size,) = struct.unpack_from(">i", body, pos)
                    pos += 4
                records = body[pos:pos + max(size, 0)]
                pos += max(size, 0)
                if flexible:
                    pos = _skip_tags(body, pos)
                at = 0
                while at + 61 <= len(records):
                    (batch_len,) = struct.unpack_from(">i", records, at + 8)
                    if records[at + 16] == 2:  # magic
                        pid, epoch, seq, count = struct.unpack_from(">qhii", records, at + 43)
                        batches.append((topic, partition, pid, epoch, seq, count))
                    at += 12 + batch_len
            if flexible:
                pos = _skip_tags(body, pos)
        return acks, batches
    except (struct.error, IndexError, UnicodeDecodeError):
        return None, []


def _skip_tags(buf, pos):
    n, pos = _varint(buf, pos)
    for _ in range(n):
        _, pos = _varint(buf, pos)
        size, pos = _varint(buf, pos)
        pos += size
    return pos


def _array_len(buf, pos, flexible):
    if flexible:
        n, pos = _varint(buf, pos)
        return max(n - 1, 0), pos
    (n,) = struct.unpack_from(">i", buf, pos)
    return max(n, 0), pos + 4


class Proxy:
    def __init__(self, listen_port, upstream_port, drop_every=7, host="127.0.0.1"):
        self.host = host
        self.listen_port = listen_port
        self.upstream_port = upstream_port
        self.drop_every = drop_every
        self.dropping = True
        self.lock = threading.Lock()
        self.reset_stats()
        self.loop = None
        self.server = None
        self.thread = None
        self.ready = threading.Event()
        self.error = None

    def reset_stats(self):
        with self.lock:
            self.produce_requests = 0      # Produce requests with acks != 0 seen while dropping
            self.dropped = 0               # responses thrown away
            self.connections = 0
            self.api_versions = {}         # api_key -> set of versions seen
            # idempotent batches (producer id, epoch, sequence) whose acknowledgement was
            # lost, and how many of them the client sent again
            self.unacked = set()
            self.resent = 0
            self.unparsed = 0

    def stats(self):
        with self.lock:
            return {"produce_requests": self.produce_requests, "dropped": self.dropped,
                    "connections": self.connections, "unacked_batches": len(self.unacked),
                    "resent_batches": self.resent, "unparsed": self.unparsed,
                    "api_versions": {k: sorted(v) for k, v in self.api_versions.items()}}

    # -- thread / loop management --

    def start(self):
        self.thread = threading.Thread(target=self._run, name="lost-ack-proxy", daemon=True)
        self.thread.start()
        if not self.ready.wait(10) or self.error:
            raise RuntimeError(f"proxy did not start: {self.error}")

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.listen_port))
        except OSError as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def stop(self):
        if self.loop is None or self.server is None:
            return

        async def shutdown():
            self.server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        fut = asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        try:
            fut.result(5)
        except Exception:  # noqa: BLE001 - best effort
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    # -- the proxying --

    async def _handle(self, c_reader, c_writer):
        with self.lock:
            self.connections += 1
        try:
            s_reader, s_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            c_writer.close()
            return
        to_drop = set()
        in_flight = {}  # correlation id -> idempotent batches of a Produce request

        async def client_to_server():
            while True:
                head = await c_reader.readexactly(4)
                (size,) = struct.unpack(">i", head)
                body = await c_reader.readexactly(size)
                api_key, version, corr = struct.unpack_from(">hhi", body, 0)
                with self.lock:
                    self.api_versions.setdefault(api_key, set()).add(version)
                    if api_key == PRODUCE:
                        acks, batches = parse_produce(body)
                        if acks is None:
                            self.unparsed += 1
                        keys = [b[:5] for b in batches if b[2] >= 0]  # with a producer id
                        self.resent += sum(1 for k in keys if k in self.unacked)
                        if acks != 0:
                            in_flight[corr] = keys
                            if self.dropping:
                                self.produce_requests += 1
                                if self.produce_requests % self.drop_every == 0:
                                    to_drop.add(corr)
                s_writer.write(head + body)
                await s_writer.drain()

        async def server_to_client():
            while True:
                head = await s_reader.readexactly(4)
                (size,) = struct.unpack(">i", head)
                body = await s_reader.readexactly(size)
                (corr,) = struct.unpack_from(">i", body, 0)
                if corr in to_drop:
                    with self.lock:
                        self.dropped += 1
                        # This response and those of every request still in flight on
                        # this connection never reach the client.
                        for keys in in_flight.values():
                            self.unacked.update(keys)
                    return  # lose the acknowledgement and close both connections
                in_flight.pop(corr, None)
                c_writer.write(head + body)
                await c_writer.drain()

        async def quietly(coro):
            try:
                await coro
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                pass  # one side closed

        tasks = [asyncio.ensure_future(quietly(client_to_server())),
                 asyncio.ensure_future(quietly(server_to_client()))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for w in (c_writer, s_writer):
                try:
                    w.close()
                except Exception:  # noqa: BLE001
                    pass
