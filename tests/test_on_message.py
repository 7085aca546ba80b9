"""``Connection.on_message`` and ``send_nowait`` in the asyncio layer, over real sockets on 127.0.0.1.

An application that sets ``on_message`` gets each message by a plain call
as soon as it is read, and answers with ``send_nowait``. These tests check
what such an application relies on: every message, in order, both sides,
with and without compression; the messages received before the callback
was set; the errors for mixing it with ``recv()``; a failing callback
closing the connection with 1011; and a peer that sends without reading
not making the write buffer grow.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Coroutine
from typing import Any

import pytest

from tests.helpers import client_frame, parse_frames
from wskit.asyncio import ServerConnection, connect, serve
from wskit.exceptions import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK
from wskit.frames import Opcode

HOST = "127.0.0.1"


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def port_of(server: Any) -> int:
    return int(server.sockets[0].getsockname()[1])


async def callback_echo(ws: ServerConnection) -> None:
    ws.on_message = ws.send_nowait
    await ws.wait_closed()


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_a_callback_echo_server_answers_every_message_in_order(compression: str | None) -> None:
    messages: list[str | bytes] = ["hello", b"\x00\xff" * 10, "", b"", "é" * 70_000, os.urandom(1 << 20)]
    messages += [f"burst {i}" for i in range(200)]

    async def main() -> None:
        async with serve(callback_echo, HOST, 0, compression=compression, max_size=None) as server:
            async with connect(f"ws://{HOST}:{port_of(server)}/", compression=compression, max_size=None) as ws:
                for message in messages[:6]:  # one at a time
                    await ws.send(message)
                    assert await ws.recv() == message
                for message in messages[6:]:  # all at once: many in one read
                    await ws.send(message)
                assert [await ws.recv() for _ in messages[6:]] == messages[6:]
            assert ws.close_code == 1000

    run(main())


def test_the_client_side_and_the_messages_received_before_the_callback() -> None:
    async def handler(ws: ServerConnection) -> None:
        for i in range(3):  # written with the 101, before the client can ask anything
            await ws.send(f"early {i}")
        async for message in ws:
            await ws.send(f"echo {message}")

    async def main() -> None:
        async with serve(handler, HOST, 0) as server:
            async with connect(f"ws://{HOST}:{port_of(server)}/") as ws:
                # The Pong comes after the three messages: they wait in the queue now.
                await (await ws.ping())
                got: list[Any] = []
                done = asyncio.get_running_loop().create_future()

                def collect(message: Any) -> None:
                    got.append(message)
                    if message == "echo last":
                        done.set_result(None)

                ws.on_message = collect
                assert got == ["early 0", "early 1", "early 2"]  # at once, in order
                assert ws.on_message is collect
                await ws.send("last")
                await done
                assert got[3:] == ["echo last"]
                # Back to recv().
                ws.on_message = None
                await ws.send("again")
                assert await ws.recv() == "echo again"

    run(main())


def test_recv_and_on_message_do_not_mix_and_bad_values_are_refused() -> None:
    async def main() -> None:
        async with serve(callback_echo, HOST, 0) as server:
            async with connect(f"ws://{HOST}:{port_of(server)}/") as ws:
                with pytest.raises(TypeError, match="on_message must be a callable or None, not str"):
                    ws.on_message = "print"  # type: ignore[assignment]
                assert ws.on_message is None
                waiting = asyncio.ensure_future(ws.recv())
                await asyncio.sleep(0)  # the task now waits in recv()
                with pytest.raises(ConcurrencyError, match="while recv\\(\\) is waiting"):
                    ws.on_message = print
                await ws.send("for the waiting recv")
                assert await waiting == "for the waiting recv"
                ws.on_message = lambda message: None
                with pytest.raises(ConcurrencyError, match="messages go to the callback"):
                    await ws.recv()
                with pytest.raises(ConcurrencyError, match="messages go to the callback"):
                    async for _ in ws:
                        pass

    run(main())


def test_send_nowait_errors() -> None:
    release = asyncio.Event()
    halfway = asyncio.Event()

    async def slow_fragments() -> Any:
        yield "first "
        halfway.set()  # send() holds the first fragment, and waits for the second
        await release.wait()
        yield "second"

    async def main() -> None:
        async with serve(callback_echo, HOST, 0) as server:
            async with connect(f"ws://{HOST}:{port_of(server)}/") as ws:
                with pytest.raises(TypeError, match="takes a str or a bytes-like object, not int"):
                    ws.send_nowait(42)  # type: ignore[arg-type]
                with pytest.raises(TypeError, match="not list"):
                    ws.send_nowait(["fragments", "are for send()"])  # type: ignore[arg-type]
                sending = asyncio.ensure_future(ws.send(slow_fragments()))
                await halfway.wait()
                with pytest.raises(ConcurrencyError, match="fragmented message"):
                    ws.send_nowait("in the middle")
                release.set()
                await sending
                assert await ws.recv() == "first second"
                ws.send_nowait(bytearray(b"a bytearray"))
                assert await ws.recv() == b"a bytearray"
            with pytest.raises(ConnectionClosedOK):
                ws.send_nowait("too late")

    run(main())


def test_a_failing_callback_is_logged_and_closes_the_connection_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []

    async def handler(ws: ServerConnection) -> None:
        def fragile(message: Any) -> None:
            seen.append(message)
            if message == "boom":
                raise ValueError("cannot take this one")
            ws.send_nowait(message)

        ws.on_message = fragile
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, HOST, 0) as server:
            async with connect(f"ws://{HOST}:{port_of(server)}/") as ws:
                await ws.send("fine")
                assert await ws.recv() == "fine"
                await ws.send("boom")
                await ws.send("after")  # the callback is not called again
                with pytest.raises(ConnectionClosedError) as failed:
                    await ws.recv()
            assert (failed.value.code, failed.value.reason) == (1011, "error in the on_message callback")

    with caplog.at_level(logging.ERROR):
        run(main())
    assert seen == ["fine", "boom"]
    assert any("on_message callback failed" in r.getMessage() and r.exc_info
               and isinstance(r.exc_info[1], ValueError) for r in caplog.records)


def raw_upgrade(sock: socket.socket) -> None:
    """The opening handshake on a blocking socket, reading nothing past the response."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(1)
        assert chunk
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 101 ")


def read_exactly(sock: socket.socket, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = sock.recv(1 << 20)
        assert chunk, f"connection closed after {len(received)} of {size} bytes"
        received += chunk
    return bytes(received)


def test_a_peer_that_sends_without_reading_does_not_grow_the_write_buffer() -> None:
    """The echoes fill the write buffer: the server stops reading until the peer reads them."""
    write_limit = 64 * 1024
    payload = os.urandom(32 * 1024)
    count = 1000  # 32 MiB each way: far beyond every buffer on the way
    frame = client_frame(Opcode.BINARY, payload)

    async def main() -> None:
        connections: list[ServerConnection] = []
        largest = 0

        async def handler(ws: ServerConnection) -> None:
            connections.append(ws)
            await callback_echo(ws)

        async with serve(handler, HOST, 0, write_limit=write_limit, max_size=None) as server:
            sock = socket.create_connection((HOST, port_of(server)))  # blocking: used from threads only
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            await asyncio.to_thread(raw_upgrade, sock)
            # The peer writes every message, reading nothing, from another thread.
            writer = threading.Thread(target=sock.sendall, args=(frame * count,))
            writer.start()
            # Wait until the server stopped reading: its transport says so.
            while not connections or connections[0].transport is None or connections[0].transport.is_reading():
                await asyncio.sleep(0.01)
            transport = connections[0].transport
            largest = transport.get_write_buffer_size()
            # Now read everything: every echo arrives, in order, and the writer finishes.
            echo_size = len(frame) - 4  # the server's frames carry no masking key
            reading = asyncio.ensure_future(asyncio.to_thread(read_exactly, sock, count * echo_size))
            while not reading.done():
                largest = max(largest, transport.get_write_buffer_size())
                await asyncio.sleep(0.001)
            frames = parse_frames(await reading, masked=False)
            await asyncio.to_thread(writer.join)
            assert len(frames) == count and all(f.data == payload for f in frames)
            sock.close()
        # Bounded: the limit plus the echoes of what one read of the socket
        # brought (at most 256 KiB), never the 32 MiB the peer sent.
        assert largest <= write_limit + 256 * 1024 + len(frame), largest

    run(main())

