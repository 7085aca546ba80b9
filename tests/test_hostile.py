"""Attacks a hostile peer can make, over real sockets on 127.0.0.1.

Each test runs against ``wskit.asyncio.serve`` and ``wskit.sync.serve`` with
the limits a careful deployment sets (``max_size`` 1 MiB, ``max_queue`` 4,
``write_limit`` 32 KiB); the attacker is a raw socket driven by the sans-I/O
client core and a raw frame builder. What must hold: memory stays bounded
by the limits, the attack ends with the right close code, the server goes on
serving, and nothing of the server's internals reaches the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import wskit.asyncio
import wskit.sync
from wskit import ClientProtocol, hookimpl
from wskit.events import BinaryMessage, Close, Event, Pong, Response, TextMessage
from wskit.exceptions import ProtocolError, WebSocketClosed
from wskit.frames import Frame, Opcode

from helpers import client_frame

HOST = "127.0.0.1"
TIMEOUT = 10.0
KiB = 1024
MiB = 2**20
LIMITS: dict[str, Any] = {"max_size": MiB, "max_queue": 4, "write_limit": 32 * KiB, "ping_interval": None}
SECRET = "db password is hunter2"  # what a plugin's exception says; must never reach the peer

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dev dependency
    uvloop = None


class Boom:
    """A plugin with a bug: it raises on a frame whose payload is ``b"boom"``."""

    @hookimpl
    def wskit_frame_received(self, frame: Frame) -> None:
        if frame.data == b"boom":
            raise RuntimeError(SECRET)


class Server:
    """A running echo server of one layer, recording its server-side connections."""

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.connections: queue.Queue[Any] = queue.Queue()
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def connection(self) -> Any:
        """The server-side connection of the next client that connected."""
        return self.connections.get(timeout=TIMEOUT)

    def buffered(self, conn: Any) -> int:
        """Bytes the server holds in user space, waiting to be written to ``conn``'s socket."""
        if self.loop is None:
            return sum(len(chunk) for chunk in conn._pending if chunk is not None)

        async def size() -> int:
            transport = conn.transport
            return 0 if transport is None else int(transport.get_write_buffer_size())

        return asyncio.run_coroutine_threadsafe(size(), self.loop).result(TIMEOUT)

    def shrink_send_buffer(self, conn: Any, size: int) -> None:
        """Make the kernel's send buffer of ``conn``'s socket small, as on a congested network."""
        if self.loop is None:
            sock = conn.socket
        else:  # a transport is used from its loop's thread only (some check it)
            async def transport_socket() -> Any:
                return conn.transport.get_extra_info("socket")

            sock = asyncio.run_coroutine_threadsafe(transport_socket(), self.loop).result(TIMEOUT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    def wait_closed(self, conn: Any) -> int | None:
        """Wait until ``conn`` is closed on the server side; return its close code."""
        if self.loop is None:
            assert conn.wait_closed(TIMEOUT)
        else:
            asyncio.run_coroutine_threadsafe(asyncio.wait_for(conn.wait_closed(), TIMEOUT), self.loop).result()
        return int(conn.close_code) if conn.close_code is not None else None


@contextlib.contextmanager
def running(layer: str, **options: Any) -> Iterator[Server]:
    server = Server(layer)
    options = {**LIMITS, **options}
    if layer == "sync":
        def echo(ws: Any) -> None:
            server.connections.put(ws)
            try:
                for message in ws:
                    ws.send(message)
            except WebSocketClosed:
                pass

        sync_server = wskit.sync.serve(echo, HOST, 0, **options)
        server.port = sync_server.socket.getsockname()[1]
        thread = threading.Thread(target=sync_server.serve_forever)
        thread.start()
        try:
            yield server
        finally:
            sync_server.shutdown()
            thread.join(TIMEOUT)
        return

    loop = server.loop = uvloop.new_event_loop() if layer == "uvloop" else asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()

    async def aecho(ws: Any) -> None:
        server.connections.put(ws)
        try:
            async for message in ws:
                await ws.send(message)
        except WebSocketClosed:
            pass

    async def start() -> Any:
        return await wskit.asyncio.serve(aecho, HOST, 0, **options)

    async def stop(running_server: Any) -> None:
        running_server.close()
        await running_server.wait_closed()

    async_server = asyncio.run_coroutine_threadsafe(start(), loop).result(TIMEOUT)
    server.port = async_server.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(stop(async_server), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


LAYERS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")),
    "sync",
]


@pytest.fixture(params=LAYERS)
def layer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Attacker:
    """A raw client socket after a successful opening handshake."""

    def __init__(self, port: int, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting: it sets the TCP window offered
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect((HOST, port))
        self.client = ClientProtocol(f"ws://{HOST}:{port}/", extensions=[])
        self.sock.sendall(b"".join(self.client.connect()))
        self.events: list[Event] = []
        while not self.events:
            self.read()
        assert isinstance(self.events.pop(0), Response)

    def read(self) -> bool:
        """Read once and parse; ``False`` at EOF."""
        try:
            data = self.sock.recv(256 * KiB)
        except ConnectionResetError:
            data = b""
        if not data:
            self.events += self.client.receive_eof()
            return False
        try:
            self.events += self.client.receive_data(data)
        except ProtocolError as exc:
            self.events += exc.events
            raise
        return True

    def read_until(self, done: Callable[[], bool]) -> None:
        while not done():
            assert self.read(), "the server closed the connection"

    def finish(self) -> list[Close]:
        """Read until the server's Close, answer it, read until EOF, close; return the Close frames received."""
        while self.read():
            if self.client.close_received and self.client.may_send_close:
                close = next(event for event in self.events if isinstance(event, Close))
                try:
                    self.sock.sendall(b"".join(self.client.send_close(close.code, close.reason)))
                except OSError:
                    break
        self.sock.close()
        return [event for event in self.events if isinstance(event, Close)]

    def close(self) -> None:
        self.sock.close()


def send_until_answered(attacker: Attacker, chunk: bytes, limit: int) -> int:
    """Write ``chunk`` again and again until the server answers (or ``limit`` times); return how many."""
    sock = attacker.sock
    for count in range(limit):
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return count
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return count
    return limit


def assert_still_serving(server: Server) -> None:
    attacker = Attacker(server.port)
    server.connection()
    attacker.sock.sendall(b"".join(attacker.client.send_text("still there?")))
    attacker.read_until(lambda: TextMessage("still there?") in attacker.events)
    attacker.close()


# -- 1. endless empty continuation frames ---------------------------------------------


def test_endless_empty_continuations_end_with_1009(layer: str) -> None:
    with running(layer) as server:
        attacker = Attacker(server.port)
        conn = server.connection()
        attacker.sock.sendall(client_frame(Opcode.TEXT, b"a", fin=False))
        flood = client_frame(Opcode.CONT, b"", fin=False) * 5000
        chunks = send_until_answered(attacker, flood, 400)  # up to 2,000,000 empty frames
        closes = attacker.finish()
        assert server.wait_closed(conn) == 1009
        assert [close.code for close in closes] in ([1009], [])  # [] if a reset took it away
        # The limit is 65,536 frames for max_size 1 MiB; what the socket buffers held may follow.
        assert chunks < 400, "the server read 2,000,000 empty frames without ending the message"
        assert conn.close_reason.startswith("message in more than 65536 frames")
        attacker.close()
        assert_still_serving(server)


# -- 2. ping flood ----------------------------------------------------------------------


PINGS = 100_000
PING_PAYLOAD = b"p" * 125  # the largest Ping: 127-byte Pongs, 12 MiB of them in all


def test_ping_flood_without_reading_keeps_the_write_buffer_bounded(layer: str) -> None:
    with running(layer) as server:
        attacker = Attacker(server.port)
        conn = server.connection()
        ping = client_frame(Opcode.PING, PING_PAYLOAD)
        sent = threading.Event()
        failure: list[BaseException] = []

        def flood() -> None:
            try:
                for _ in range(PINGS // 1000):
                    attacker.sock.sendall(ping * 1000)
            except BaseException as exc:  # pragma: no cover - reported by the test below
                failure.append(exc)
            finally:
                sent.set()

        sender = threading.Thread(target=flood)
        sender.start()
        # The attacker reads nothing: the server must stop reading its Pings
        # rather than pile up Pongs. Watch the server's write buffer while the
        # Pings go out, until the sender is done or stuck (the server stopped reading).
        biggest = 0
        stuck_since = None
        progress = -1
        while not sent.is_set():
            biggest = max(biggest, server.buffered(conn))
            now = time.monotonic()
            written = _unsent(attacker.sock)  # changes while the server reads
            if written != progress:
                progress, stuck_since = written, now
            elif now - (stuck_since or now) > 1.0:
                break  # no progress for a second: the server stopped reading
            sent.wait(0.005)
        biggest = max(biggest, server.buffered(conn))
        # write_limit plus the Pongs answering what one read of the socket
        # returned (asyncio reads up to 256 KiB; a Pong is smaller than its Ping).
        assert biggest <= 32 * KiB + 256 * KiB, f"server write buffer reached {biggest} bytes"

        # Now the attacker reads: every Pong arrives, then the connection works.
        def pongs() -> int:
            return sum(1 for event in attacker.events if isinstance(event, Pong))

        attacker.read_until(lambda: pongs() == PINGS)
        sender.join(TIMEOUT)
        assert not failure and not sender.is_alive()
        assert all(event == Pong(PING_PAYLOAD) for event in attacker.events)
        attacker.events.clear()
        attacker.sock.sendall(b"".join(attacker.client.send_text("after the flood")))
        attacker.read_until(lambda: TextMessage("after the flood") in attacker.events)
        assert server.buffered(conn) == 0
        attacker.close()


def _unsent(sock: socket.socket) -> int:
    """Bytes not yet sent from ``sock``'s send queue (Linux: SIOCOUTQ); 0 elsewhere."""
    try:
        import fcntl
        import struct
        import termios

        outq = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (ImportError, OSError):  # pragma: no cover - not Linux
        return 0
    return int(outq)


# -- 3. a plugin's exception text stays on the server ----------------------------------------


def test_plugin_error_sends_1011_with_a_generic_reason(layer: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), running(layer, plugins=[Boom()]) as server:
        attacker = Attacker(server.port)
        conn = server.connection()
        attacker.sock.sendall(b"".join(attacker.client.send_binary(b"boom")))
        assert attacker.finish() == [Close(1011, "internal error")]
        assert server.wait_closed(conn) == 1011
        attacker.close()
        assert_still_serving(server)
    # The server's log has it all: the plugin, the hook, the exception and its traceback.
    records = [r for r in caplog.records if SECRET in r.getMessage() or (r.exc_info and SECRET in str(r.exc_info[1]))]
    assert records, "the plugin's error was not logged"
    record = records[0]
    assert "plugin '" in record.getMessage()
    assert "wskit_frame_received" in record.getMessage()
    assert record.exc_info is not None


def test_ping_flood_while_the_server_waits_to_send_keeps_the_write_buffer_bounded(layer: str) -> None:
    # The attacker makes the server's handler block in send (it echoes big
    # messages the attacker does not read), then floods Pings: the Pongs must
    # not pile up behind the blocked message.
    with running(layer) as server:
        attacker = Attacker(server.port, receive_buffer=4096)
        conn = server.connection()
        server.shrink_send_buffer(conn, 16 * KiB)
        big = b"B" * (MiB - KiB)
        messages = 2  # fewer than max_queue: the server goes on reading
        attacker.sock.sendall(b"".join(attacker.client.send_binary(big)) * messages)
        ping = client_frame(Opcode.PING, PING_PAYLOAD)
        pings = 50_000
        sent = threading.Event()

        def flood() -> None:
            try:
                for _ in range(pings // 1000):
                    attacker.sock.sendall(ping * 1000)
            finally:
                sent.set()

        sender = threading.Thread(target=flood)
        sender.start()
        biggest = 0
        stuck_since = None
        progress = -1
        while not sent.is_set():
            biggest = max(biggest, server.buffered(conn))
            now = time.monotonic()
            written = _unsent(attacker.sock)
            if written != progress:
                progress, stuck_since = written, now
            elif now - (stuck_since or now) > 1.0:
                break
            sent.wait(0.005)
        biggest = max(biggest, server.buffered(conn))
        # The message being sent, plus write_limit, plus the Pongs of one socket read.
        assert biggest <= MiB + 32 * KiB + 256 * KiB, f"server write buffer reached {biggest} bytes"

        def complete() -> bool:
            received = attacker.events
            return (sum(1 for e in received if isinstance(e, Pong)) == pings
                    and sum(1 for e in received if e == BinaryMessage(big)) == messages)

        attacker.read_until(complete)
        sender.join(TIMEOUT)
        assert not sender.is_alive()
        attacker.events.clear()
        attacker.sock.sendall(b"".join(attacker.client.send_text("after the flood")))
        attacker.read_until(lambda: TextMessage("after the flood") in attacker.events)
        attacker.close()
