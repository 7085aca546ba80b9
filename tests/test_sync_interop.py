"""wskit.sync against python-websockets 17 (both directions) and against wskit.asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedOK as WsClosedOK
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import serve as ws_serve

from wskit.exceptions import ConnectionClosedError, ConnectionClosedOK
from wskit.sync import ServerConnection, connect, serve

MiB = 2**20


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    before = set(threading.enumerate())  # a thread of an earlier test may still be ending: not ours
    yield
    deadline = time.monotonic() + 3
    while any(t not in before for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [t for t in threading.enumerate() if t not in before] == []


@contextlib.contextmanager
def websockets_server(handler: Any, **options: Any) -> Iterator[str]:
    server = ws_serve(handler, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
    finally:
        server.shutdown()
        thread.join()


@contextlib.contextmanager
def wskit_server(handler: Any, **options: Any) -> Iterator[str]:
    server = serve(handler, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
    finally:
        server.shutdown()
        thread.join()


def ws_echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


# -- wskit.sync client -> python-websockets server ------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_wskit_client_to_websockets_server(compression: str | None) -> None:
    big = os.urandom(4 * MiB)
    with websockets_server(ws_echo, compression=compression, max_size=None) as uri:
        with connect(uri, compression=compression, max_size=None) as ws:
            assert ws.response is not None
            assert (ws.response.headers.get("Sec-WebSocket-Extensions") is not None) == (compression is not None)
            ws.send("héllo")
            assert ws.recv() == "héllo"
            ws.send(big)
            assert ws.recv() == big
            assert ws.ping().wait(5)
        assert ws.close_code == 1000


def test_wskit_client_sees_websockets_close_code_and_subprotocol() -> None:
    def handler(ws: Any) -> None:
        ws.send(ws.subprotocol)
        ws.close(4001, "custom")

    with websockets_server(handler, subprotocols=["chat"]) as uri:
        with connect(uri, subprotocols=["other", "chat"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.recv() == "chat"
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv()
            assert (info.value.code, info.value.reason) == (4001, "custom")


def test_websockets_server_sees_wskit_close() -> None:
    seen: list[Any] = []
    handled = threading.Event()

    def handler(ws: Any) -> None:
        try:
            ws.recv()
        except Exception as exc:
            seen.append(exc)
        finally:
            handled.set()

    with websockets_server(handler) as uri:
        with connect(uri) as ws:
            ws.close(1001, "leaving")
        # websockets < 17's shutdown() does not wait for handler threads.
        assert handled.wait(5)
    assert len(seen) == 1 and isinstance(seen[0], WsClosedOK)
    assert seen[0].rcvd is not None and seen[0].rcvd.code == 1001


# -- python-websockets client -> wskit.sync server ------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_websockets_client_to_wskit_server(compression: str | None) -> None:
    big = os.urandom(4 * MiB)
    with wskit_server(ws_echo, compression=compression, max_size=None) as uri:
        with ws_connect(uri, compression=compression, max_size=None) as ws:
            ws.send("héllo")
            assert ws.recv() == "héllo"
            ws.send(big)
            assert ws.recv() == big
            assert ws.ping().wait(5)


def test_websockets_client_sees_wskit_close_and_subprotocol() -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send(ws.subprotocol or "")
        ws.close(1001, "bye")

    with wskit_server(handler, subprotocols=["chat"]) as uri:
        with ws_connect(uri, subprotocols=["chat"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat"
            assert ws.recv() == "chat"
            with pytest.raises(WsClosedOK) as info:
                ws.recv()
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "bye")


def test_websockets_client_gets_process_request_401() -> None:
    with wskit_server(ws_echo, process_request=lambda conn, req: conn.respond(401, "no\n")) as uri:
        with pytest.raises(InvalidStatus) as info:
            ws_connect(uri)
        assert info.value.response.status_code == 401


def test_wskit_handler_sees_websockets_client_close() -> None:
    seen: list[Any] = []
    done = threading.Event()

    def handler(ws: ServerConnection) -> None:
        try:
            ws.recv()
        except Exception as exc:
            seen.append(exc)
        finally:
            done.set()

    with wskit_server(handler) as uri:
        with ws_connect(uri) as ws:
            ws.close(4002, "done")
        assert done.wait(5)
    assert isinstance(seen[0], ConnectionClosedError)
    assert (seen[0].code, seen[0].reason) == (4002, "done")


# -- wskit.sync <-> wskit.asyncio ----------------------------------------------------


def _asyncio_layer() -> Any:
    return pytest.importorskip("wskit.asyncio")


def test_sync_client_to_asyncio_server() -> None:
    wskit_asyncio = _asyncio_layer()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ports: list[int] = []
    stop: list[asyncio.Event] = []

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        stop.append(asyncio.Event())
        async with wskit_asyncio.serve(echo, "127.0.0.1", 0) as server:
            ports.append(server.sockets[0].getsockname()[1])
            ready.set()
            await stop[0].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    try:
        assert ready.wait(5)
        with connect(f"ws://127.0.0.1:{ports[0]}/") as ws:
            ws.send("to asyncio")
            assert ws.recv() == "to asyncio"
            ws.send(os.urandom(MiB))
            assert len(ws.recv()) == MiB
        assert ws.close_code == 1000
    finally:
        if stop:
            loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
        loop.close()


def test_asyncio_client_to_sync_server() -> None:
    wskit_asyncio = _asyncio_layer()

    async def main(uri: str) -> None:
        async with wskit_asyncio.connect(uri) as ws:
            await ws.send("to sync")
            assert await ws.recv() == "to sync"
            await ws.send(b"\x00" * MiB)
            assert await ws.recv() == b"\x00" * MiB

    with wskit_server(ws_echo) as uri:
        asyncio.run(main(uri))


def test_sync_server_closes_asyncio_client_with_1001() -> None:
    wskit_asyncio = _asyncio_layer()

    def handler(ws: ServerConnection) -> None:
        ws.close(1001, "going")

    async def main(uri: str) -> None:
        async with wskit_asyncio.connect(uri) as ws:
            with pytest.raises(ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.code == 1001

    with wskit_server(handler) as uri:
        asyncio.run(main(uri))
