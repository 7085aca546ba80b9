"""broadcast() in both layers: writes without waiting, skips closed connections, reports slow ones.

Real servers on 127.0.0.1, real wskit clients, and a "slow client": a raw
socket that completes the opening handshake and then never reads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from wskit import ServerProtocol, State
from wskit.asyncio import ServerConnection as AsyncServerConnection
from wskit.asyncio import broadcast as abroadcast
from wskit.asyncio import connect as aconnect
from wskit.asyncio import serve as aserve
from wskit.broadcast import Broadcast
from wskit.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from wskit.sync import ServerConnection, broadcast, connect, serve

HOST = "127.0.0.1"


def raw_slow_client(port: int) -> socket.socket:
    """Open a WebSocket connection with a raw socket that will never read after the handshake."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((HOST, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(1)  # one byte at a time: nothing after the response is read
        assert chunk
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 101 ")
    return sock


# -- the sans-I/O part -------------------------------------------------------------


def open_server_protocol(extensions: list[Any] | None = None, offer: str = "") -> ServerProtocol:
    server = ServerProtocol(extensions=extensions)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n").encode()
    (req,) = server.receive_data(request)
    server.accept(req)
    assert server.state is State.OPEN
    return server


def test_the_frame_is_built_once_for_connections_without_extensions() -> None:
    plain = [open_server_protocol() for _ in range(3)]
    deflate = open_server_protocol([ServerPerMessageDeflateFactory()],
                                   "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert deflate.extensions
    shared = Broadcast("hello " * 100)
    frames = [shared.frames_for(p) for p in plain]
    assert frames[0] == frames[1] == frames[2]
    assert frames[0][0] is frames[1][0]  # the same bytes object: built once
    assert shared.shared == 3
    compressed = shared.frames_for(deflate)
    assert shared.shared == 3  # framed by its own protocol (its compressor)
    assert len(compressed[0]) < len(frames[0][0])
    assert frames[0][0][:1] == b"\x81" and compressed[0][:1] == b"\xc1"  # FIN+TEXT; FIN+RSV1+TEXT


def test_broadcast_message_types() -> None:
    assert Broadcast(b"\x00\x01").text is False
    assert Broadcast(bytearray(b"ab")).payload == b"ab"
    assert Broadcast(memoryview(b"ab")).payload == b"ab"
    assert Broadcast("é").payload == "é".encode()
    with pytest.raises(TypeError, match="str or a bytes-like message, not int"):
        Broadcast(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not list"):
        abroadcast([], ["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not list"):
        broadcast([], ["a"])  # type: ignore[arg-type]


# -- asyncio -------------------------------------------------------------------------


def arun(coro: Any, timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_open(server: Any, count: int) -> None:
    while len(server.connections) < count:
        await asyncio.sleep(0.001)


def test_asyncio_broadcast_reaches_every_open_connection_with_and_without_compression() -> None:
    async def stay(ws: AsyncServerConnection) -> None:
        await ws.wait_closed()

    async def main() -> None:
        async with aserve(stay, HOST, 0) as server:
            port = server.sockets[0].getsockname()[1]
            plain = [await aconnect(f"ws://{HOST}:{port}/", compression=None) for _ in range(3)]
            deflated = [await aconnect(f"ws://{HOST}:{port}/") for _ in range(2)]
            await wait_open(server, 5)
            assert sum(1 for c in server.connections if c.protocol.extensions) == 2
            assert abroadcast(server.connections, "hello") == []
            assert abroadcast(server.connections, b"\x00bin") == []
            for ws in plain + deflated:
                assert await ws.recv() == "hello"
                assert await ws.recv() == b"\x00bin"
            # A closed connection is skipped silently, the others still get the message.
            everyone = list(server.connections)
            await plain.pop().close()
            while len(server.connections) > 4:
                await asyncio.sleep(0.001)
            assert abroadcast(everyone, "again") == []
            for ws in plain + deflated:
                assert await ws.recv() == "again"
            for ws in plain + deflated:
                await ws.close()

    arun(main())


def test_asyncio_broadcast_never_waits_for_a_slow_client_and_reports_it() -> None:
    async def stay(ws: AsyncServerConnection) -> None:
        await ws.wait_closed()

    async def main() -> None:
        async with aserve(stay, HOST, 0, write_limit=16384, compression=None, close_timeout=2) as server:
            port = server.sockets[0].getsockname()[1]
            fast = [await aconnect(f"ws://{HOST}:{port}/", max_size=None) for _ in range(4)]
            slow = await asyncio.to_thread(raw_slow_client, port)
            await wait_open(server, 5)
            slow_conn = next(c for c in server.connections if c.remote_address[1] == slow.getsockname()[1])
            message = os.urandom(256 * 1024)
            skipped: list[Any] = []
            longest = 0.0
            rounds = 0
            while not skipped:
                rounds += 1
                assert rounds < 2000, "the slow client was never reported"
                started = time.perf_counter()
                skipped = abroadcast(server.connections, message)
                longest = max(longest, time.perf_counter() - started)
                for ws in fast:  # the fast clients get every message
                    assert await ws.recv() == message
            assert skipped == [slow_conn]
            assert longest < 0.5  # the call never waits for a socket (the bound allows for a loaded machine)
            # Still skipped while it does not read; the fast ones still get everything.
            assert abroadcast(server.connections, b"more") == [slow_conn]
            for ws in fast:
                assert await ws.recv() == b"more"
                await ws.close()
            slow.close()

    arun(main())


def test_asyncio_broadcast_reports_a_connection_sending_a_fragmented_message() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def parts() -> Any:
        yield "frag"
        started.set()
        await release.wait()
        yield "ment"

    async def handler(ws: AsyncServerConnection) -> None:
        await ws.send(parts())
        await ws.wait_closed()

    async def main() -> None:
        async with aserve(handler, HOST, 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with aconnect(f"ws://{HOST}:{port}/") as ws:
                await started.wait()
                (conn,) = server.connections
                assert abroadcast([conn], "between") == [conn]  # would break the fragmented message
                release.set()
                assert await ws.recv() == "fragment"

    arun(main())


# -- threads -------------------------------------------------------------------------


@contextlib.contextmanager
def running(handler: Any, **options: Any) -> Iterator[Any]:
    server = serve(handler, HOST, 0, **options)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()


def wait_until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def stay(ws: ServerConnection) -> None:
    ws.wait_closed()


def test_sync_broadcast_reaches_every_open_connection_with_and_without_compression() -> None:
    with running(stay) as server:
        port = server.socket.getsockname()[1]
        plain = [connect(f"ws://{HOST}:{port}/", compression=None) for _ in range(3)]
        deflated = [connect(f"ws://{HOST}:{port}/") for _ in range(2)]
        try:
            wait_until(lambda: len(server.connections) == 5)
            assert broadcast(server.connections, "hello") == []
            assert broadcast(server.connections, b"\x00bin") == []
            for ws in plain + deflated:
                assert ws.recv(5) == "hello"
                assert ws.recv(5) == b"\x00bin"
            everyone = list(server.connections)
            plain.pop().close()
            wait_until(lambda: len(server.connections) == 4)
            assert broadcast(everyone, "again") == []  # the closed one is skipped silently
            for ws in plain + deflated:
                assert ws.recv(5) == "again"
        finally:
            for ws in plain + deflated:
                ws.close()


def test_sync_broadcast_never_waits_for_a_slow_client_and_reports_it() -> None:
    with running(stay, compression=None, close_timeout=2) as server:
        port = server.socket.getsockname()[1]
        fast = [connect(f"ws://{HOST}:{port}/", max_size=None) for _ in range(4)]
        slow = raw_slow_client(port)
        try:
            wait_until(lambda: len(server.connections) == 5)
            slow_conn = next(c for c in server.connections if c.remote_address[1] == slow.getsockname()[1])
            message = os.urandom(256 * 1024)
            skipped: list[Any] = []
            longest = 0.0
            rounds = 0
            while not skipped:
                rounds += 1
                assert rounds < 2000, "the slow client was never reported"
                started = time.perf_counter()
                skipped = broadcast(server.connections, message)
                longest = max(longest, time.perf_counter() - started)
                for ws in fast:
                    assert ws.recv(10) == message
            assert skipped == [slow_conn]
            assert longest < 0.5  # the call never waits for a socket (the bound allows for a loaded machine)
            assert broadcast(server.connections, b"more") == [slow_conn]
            for ws in fast:
                assert ws.recv(10) == b"more"
        finally:
            for ws in fast:
                ws.close()
            slow.close()


def test_sync_broadcast_while_another_thread_sends_follows_its_message() -> None:
    started = threading.Event()
    release = threading.Event()

    def parts() -> Iterator[str]:
        yield "frag"
        started.set()
        release.wait(10)
        yield "ment"

    def handler(ws: ServerConnection) -> None:
        ws.send(parts())
        ws.wait_closed()

    with running(handler) as server:
        port = server.socket.getsockname()[1]
        with connect(f"ws://{HOST}:{port}/") as ws:
            assert started.wait(10)
            (conn,) = server.connections
            # The handler's thread holds the writer: the message waits for it, the call does not.
            assert broadcast([conn], "after") == []
            release.set()
            assert ws.recv(5) == "fragment"
            assert ws.recv(5) == "after"
