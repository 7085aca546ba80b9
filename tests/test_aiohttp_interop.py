"""Interoperability with aiohttp's WebSocket client and server, on 127.0.0.1.

wskit's asyncio client and its sync client against ``aiohttp.web.WebSocketResponse``,
and ``aiohttp.ClientSession.ws_connect`` against wskit's asyncio server: text,
a 1 MiB binary message, permessage-deflate on and off, subprotocols, ping/pong
and close codes both ways.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

import wskit.asyncio as wa  # noqa: E402
import wskit.sync as ws_sync  # noqa: E402
from wskit.exceptions import ConnectionClosedError, ConnectionClosedOK  # noqa: E402

HOST = "127.0.0.1"
BIG = os.urandom(2**20)  # 1 MiB: wskit's default max_size, aiohttp's limit is 4 MiB


# -- an aiohttp server ----------------------------------------------------------------


class AiohttpServer:
    """An aiohttp application with a WebSocket echo endpoint.

    ``/deflate`` accepts permessage-deflate, ``/plain`` does not; both support
    the ``chat`` subprotocol. The text ``close:CODE`` makes the server close
    with CODE; the close code a client sends is kept in ``closed_with``.
    """

    def __init__(self) -> None:
        self.closed_with: list[int | None] = []
        self.closes = threading.Condition()  # notified on each append to closed_with
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat",), compress=request.path == "/deflate",
                                   max_msg_size=4 * 2**20)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    await ws.close(code=int(msg.data[6:]), message=b"server says bye")
                    break
                await ws.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        with self.closes:
            self.closed_with.append(ws.close_code)
            self.closes.notify_all()
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/deflate", self.handler)
        app.router.add_get("/plain", self.handler)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    def wait_closes(self, count: int, timeout: float = 10) -> list[int | None]:
        """From another thread than the server's: wait until ``count`` handlers ended; their codes."""
        with self.closes:
            assert self.closes.wait_for(lambda: len(self.closed_with) >= count, timeout), self.closed_with
            return list(self.closed_with)

    def url(self, path: str) -> str:
        return f"ws://{HOST}:{self.port}{path}"


def arun(coro: Any) -> Any:
    return asyncio.run(coro)


async def no_other_tasks() -> None:
    """The wskit side leaves no task behind once closed."""
    current = asyncio.current_task()
    # aiohttp finishes its own handler tasks shortly after the close: wait for them to end.
    others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if others:
        _, pending = await asyncio.wait(others, timeout=10)
        assert not pending, f"tasks left running: {pending}"


# -- wskit asyncio client -> aiohttp server ---------------------------------------------


@pytest.mark.parametrize(("path", "compression"), [("/deflate", "deflate"), ("/plain", "deflate"),
                                                   ("/deflate", None)])
def test_asyncio_client_to_aiohttp_server(path: str, compression: str | None) -> None:
    async def main() -> None:
        server = AiohttpServer()
        await server.start()
        try:
            async with wa.connect(server.url(path), subprotocols=["chat"], compression=compression) as ws:
                negotiated = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
                if path == "/deflate" and compression is not None:
                    assert negotiated is not None and negotiated.startswith("permessage-deflate")
                    assert ws.protocol.extensions, "no extension in use"
                else:
                    assert negotiated is None and not ws.protocol.extensions
                assert ws.subprotocol == "chat"
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                await ws.send(BIG)
                assert await ws.recv() == BIG
                await ws.send("a" * 10_000)  # compressible: deflate really runs when negotiated
                assert await ws.recv() == "a" * 10_000
                latency = await asyncio.wait_for(await ws.ping(b"are you there"), 5)
                assert latency >= 0
                await ws.close(4001, "client says bye")
                # close_code is the peer's answer: an echo of 4001 or, as aiohttp does, 1000.
                assert ws.close_code in (4001, 1000)
        finally:
            await server.stop()  # waits for aiohttp's handler to end
        assert server.closed_with == [4001]
        await no_other_tasks()

    arun(main())


def test_aiohttp_server_closes_asyncio_client_with_a_code() -> None:
    async def main() -> None:
        server = AiohttpServer()
        await server.start()
        try:
            async with wa.connect(server.url("/deflate")) as ws:
                await ws.send("close:4002")
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (4002, "server says bye")
                assert ws.close_code == 4002
            async with wa.connect(server.url("/plain")) as ws:
                await ws.send("close:1000")
                with pytest.raises(ConnectionClosedOK):
                    await ws.recv()
                assert ws.close_code == 1000
        finally:
            await server.stop()
        await no_other_tasks()

    arun(main())


# -- wskit sync client -> aiohttp server -----------------------------------------------


@pytest.fixture
def threaded_aiohttp() -> Iterator[AiohttpServer]:
    """An aiohttp server in its own event loop thread, for the blocking client."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="aiohttp-server", daemon=True)
    thread.start()
    server = AiohttpServer()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.mark.parametrize(("path", "compression"), [("/deflate", "deflate"), ("/plain", "deflate"),
                                                   ("/deflate", None)])
def test_sync_client_to_aiohttp_server(threaded_aiohttp: AiohttpServer, path: str, compression: str | None) -> None:
    server = threaded_aiohttp
    before = set(threading.enumerate())
    with ws_sync.connect(server.url(path), subprotocols=["chat"], compression=compression) as ws:
        assert ws.response is not None
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert (negotiated is not None) == (path == "/deflate" and compression is not None)
        assert ws.subprotocol == "chat"
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(BIG)
        assert ws.recv(timeout=5) == BIG
        ws.send("a" * 10_000)
        assert ws.recv(timeout=5) == "a" * 10_000
        assert ws.ping(b"still there?").wait(5)
        ws.close(4001, "client says bye")
        assert ws.close_code in (4001, 1000)  # the peer's answer: aiohttp answers 1000
    with ws_sync.connect(server.url(path)) as ws:
        ws.send("close:4002")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert (info.value.code, info.value.reason) == (4002, "server says bye")
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("asyncio_"):
            continue  # the aiohttp loop's executor, not ours
        thread.join(5)
        assert not thread.is_alive(), f"thread left running: {thread.name}"
    assert 4001 in server.wait_closes(2)  # the code we closed with; the other is the server's own close


# -- aiohttp client -> wskit asyncio server ---------------------------------------------


async def wskit_handler(ws: wa.ServerConnection) -> None:
    try:
        async for message in ws:  # ends cleanly on 1000/1001, raises on other codes
            if message == "ping me":
                latency = await asyncio.wait_for(await ws.ping(b"from wskit"), 5)
                await ws.send(f"pong after {latency >= 0}")
            elif isinstance(message, str) and message.startswith("close:"):
                await ws.close(int(message[6:]), "wskit says bye")
            else:
                await ws.send(message)
    finally:
        CLOSED_WITH.append(ws.close_code)


CLOSED_WITH: list[int | None] = []


@pytest.mark.parametrize(("server_compression", "client_compress"), [("deflate", 15), ("deflate", 0),
                                                                    (None, 15)])
def test_aiohttp_client_to_asyncio_server(server_compression: str | None, client_compress: int) -> None:
    CLOSED_WITH.clear()

    async def main() -> None:
        async with wa.serve(wskit_handler, HOST, 0, subprotocols=["chat"], compression=server_compression) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://{HOST}:{port}/"
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(url, protocols=("chat",), compress=client_compress,
                                              autoping=False, max_msg_size=4 * 2**20) as ws:
                    assert ws.protocol == "chat"
                    deflate = server_compression is not None and client_compress != 0
                    assert bool(ws.compress) == deflate
                    (conn,) = server.connections
                    assert bool(conn.protocol.extensions) == deflate
                    await ws.send_str("héllo")
                    assert await ws.receive_str(timeout=5) == "héllo"
                    await ws.send_bytes(BIG)
                    assert await ws.receive_bytes(timeout=5) == BIG
                    await ws.send_str("a" * 10_000)
                    assert await ws.receive_str(timeout=5) == "a" * 10_000
                    # Ping from aiohttp: wskit answers with a Pong carrying the same data.
                    await ws.ping(b"from aiohttp")
                    msg = await ws.receive(timeout=5)
                    assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"from aiohttp")
                    # Ping from wskit: answer it by hand (autoping is off).
                    await ws.send_str("ping me")
                    msg = await ws.receive(timeout=5)
                    assert (msg.type, msg.data) == (aiohttp.WSMsgType.PING, b"from wskit")
                    await ws.pong(msg.data)
                    assert await ws.receive_str(timeout=5) == "pong after True"
                    await ws.close(code=4003, message=b"aiohttp says bye")
                    assert ws.close_code == 4003
                async with session.ws_connect(url, compress=client_compress) as ws:
                    await ws.send_str("close:4004")
                    msg = await ws.receive(timeout=5)
                    assert msg.type == aiohttp.WSMsgType.CLOSE
                    assert (msg.data, msg.extra) == (4004, "wskit says bye")
                    assert ws.close_code == 4004
            server.close()
            await server.wait_closed()
        # The code aiohttp closed with; then aiohttp's answer to our 4004
        # (RFC 6455 §5.5.1: an endpoint "typically" echoes the code; aiohttp answers 1000).
        assert CLOSED_WITH[0] == 4003
        assert CLOSED_WITH[1] in (4004, 1000)
        await no_other_tasks()

    arun(main())
