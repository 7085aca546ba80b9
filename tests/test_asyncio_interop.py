"""Interoperability of wskit.asyncio with python-websockets' asyncio client and server."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from wskit.asyncio import ConnectionClosedError, ConnectionClosedOK, ServerConnection, connect, serve

websockets = pytest.importorskip("websockets")
ws_asyncio_client = pytest.importorskip("websockets.asyncio.client")
ws_asyncio_server = pytest.importorskip("websockets.asyncio.server")
ws_exceptions = pytest.importorskip("websockets.exceptions")

HOST = "127.0.0.1"
MIB = 2**20


def arun(coro: Coroutine[Any, Any, Any], timeout: float = 20) -> Any:
    async def main() -> Any:
        result = await asyncio.wait_for(coro, timeout)
        for _ in range(5):
            await asyncio.sleep(0)
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert not others, f"leaked tasks: {others}"
        return result

    return asyncio.run(main())


def port_of(server: Any) -> int:
    return int(server.sockets[0].getsockname()[1])


# -- wskit client -> python-websockets server -----------------------------------


async def ws_handler(ws: Any) -> None:
    """python-websockets handler: echo, and close on request."""
    async for message in ws:
        if message == "close 4001":
            await ws.close(4001, "asked")
            return
        await ws.send(message)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_wskit_client_websockets_server(compression: str | None) -> None:
    async def main() -> None:
        async with ws_asyncio_server.serve(ws_handler, HOST, 0, compression=compression,
                                           subprotocols=["chat"], max_size=2 * MIB) as server:
            uri = f"ws://{HOST}:{port_of(server)}/"
            async with connect(uri, compression=compression, subprotocols=["chat"], max_size=2 * MIB) as ws:
                assert ws.subprotocol == "chat"
                assert [e.name for e in ws.protocol.extensions] == (
                    ["permessage-deflate"] if compression else [])
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                big = bytes(range(256)) * 4096  # 1 MiB
                await ws.send(big)
                assert await ws.recv() == big
                await ws.send(["frag", "mented"])
                assert await ws.recv() == "fragmented"
                latency = await (await ws.ping())
                assert latency >= 0
                await ws.send("close 4001")
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert (info.value.code, info.value.reason) == (4001, "asked")
            async with connect(uri, compression=compression, subprotocols=["chat"]) as ws:
                await ws.close(1001, "bye")
                assert ws.close_code == 1001

    arun(main())


# -- python-websockets client -> wskit server -----------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_websockets_client_wskit_server(compression: str | None) -> None:
    closes: asyncio.Queue[tuple[int | None, str | None]] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                if message == "close 4002":
                    await ws.close(4002, "as asked")
                    return
                await ws.send(message)
        finally:
            closes.put_nowait((ws.close_code, ws.close_reason))

    async def main() -> None:
        async with serve(handler, HOST, 0, compression=compression, subprotocols=["chat"],
                         max_size=2 * MIB) as server:
            uri = f"ws://{HOST}:{port_of(server)}/"
            async with ws_asyncio_client.connect(uri, compression=compression, subprotocols=["chat"],
                                                 max_size=2 * MIB) as ws:
                assert ws.subprotocol == "chat"
                negotiated = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
                assert ("permessage-deflate" in negotiated) is (compression is not None)
                await ws.send("héllo")
                assert await ws.recv() == "héllo"
                big = bytes(range(256)) * 4096  # 1 MiB
                await ws.send(big)
                assert await ws.recv() == big
                await ws.send(["frag", "mented"])
                assert await ws.recv() == "fragmented"
                latency = await (await ws.ping())
                assert latency >= 0
                await ws.send("close 4002")
                with pytest.raises(ws_exceptions.ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.rcvd is not None
                assert (info.value.rcvd.code, info.value.rcvd.reason) == (4002, "as asked")
            assert await asyncio.wait_for(closes.get(), 5) == (4002, "as asked")
            async with ws_asyncio_client.connect(uri, compression=compression) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                await ws.close(1001, "client leaving")
            assert await asyncio.wait_for(closes.get(), 5) == (1001, "client leaving")

    arun(main())


def test_websockets_client_sees_clean_close_when_handler_returns() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("one message")

    async def main() -> None:
        async with serve(handler, HOST, 0) as server:
            uri = f"ws://{HOST}:{port_of(server)}/"
            async with ws_asyncio_client.connect(uri) as ws:
                assert await ws.recv() == "one message"
                with pytest.raises(ws_exceptions.ConnectionClosedOK):
                    await ws.recv()
                assert ws.close_code == 1000

    arun(main())


def test_wskit_client_sees_websockets_server_shutdown_as_1001() -> None:
    async def handler(ws: Any) -> None:
        await ws.wait_closed()

    async def main() -> None:
        server = await ws_asyncio_server.serve(handler, HOST, 0)
        ws = await connect(f"ws://{HOST}:{port_of(server)}/")
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1001

    arun(main())
