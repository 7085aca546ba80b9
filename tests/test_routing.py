"""route(): dispatch by path with werkzeug's router, in both layers, on real servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.routing import Map, Rule

import wskit.asyncio as aws
import wskit.sync as sws
from wskit import Request
from wskit.exceptions import InvalidHandshake
from wskit.headers import Headers
from wskit.routing import Match, Router

HOST = "127.0.0.1"


def raw_get(port: int, path: str) -> bytes:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


# -- the sans-I/O router ---------------------------------------------------------------


def request(path: str) -> Request:
    return Request(path, Headers([("Host", "example.com")]))


def test_router_matches_params_and_answers_404_308_otherwise() -> None:
    def home(ws: Any) -> None: ...
    def room(ws: Any, name: str) -> None: ...
    def item(ws: Any, id: int) -> None: ...
    def chat(ws: Any) -> None: ...

    router = Router(Map([Rule("/", endpoint=home), Rule("/rooms/<name>", endpoint=room),
                         Rule("/items/<int:id>", endpoint=item), Rule("/chat/", endpoint=chat, websocket=True)]))
    assert router.match(request("/")) == Match(home, {}, "/")
    assert router.match(request("/rooms/blue?x=1")) == Match(room, {"name": "blue"}, "/rooms/<name>")
    assert router.match(request("/items/42")) == Match(item, {"id": 42}, "/items/<int:id>")
    assert router.match(request("/chat/")) == Match(chat, {}, "/chat/")
    for missing in ("/items/forty-two", "/nope", "/rooms/"):
        answer = router.match(request(missing))
        assert not isinstance(answer, Match) and answer.status_code == 404
    redirect = router.match(request("/chat"))
    assert not isinstance(redirect, Match) and redirect.status_code == 308
    assert redirect.headers["Location"] == "ws://example.com/chat/"
    assert Router({"/a/": home}, scheme="wss").match(request("/a")).headers["Location"] == (  # type: ignore[union-attr]
        "wss://example.com/a/")


def test_router_rejects_bad_routes() -> None:
    with pytest.raises(TypeError, match=r"werkzeug\.routing\.Map or a dict"):
        Router(["/"])
    with pytest.raises(TypeError, match="route '/x': the endpoint must be a handler"):
        Router(Map([Rule("/x", endpoint="x")]))


def test_missing_werkzeug_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "werkzeug" or n.startswith("werkzeug.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "werkzeug", None)  # as if not installed
    with pytest.raises(ImportError, match=r"wskit\[router\]"):
        Router({"/": print})
    with pytest.raises(ImportError, match=r"wskit\[router\]"):
        aws.route({"/": print}, HOST, 0)
    with pytest.raises(ImportError, match=r"wskit\[router\]"):
        sws.route({"/": print}, HOST, 0)


# -- asyncio -----------------------------------------------------------------------------


def test_asyncio_route_dispatches_by_path(caplog: pytest.LogCaptureFixture) -> None:
    async def home(ws: aws.ServerConnection) -> None:
        await ws.send("home")

    async def room(ws: aws.ServerConnection, name: str) -> None:
        assert ws.route is not None and ws.route.rule == "/rooms/<name>"
        await ws.send(f"room {name}")

    async def item(ws: aws.ServerConnection, id: int) -> None:
        await ws.send(f"item {id + 1}")

    async def broken(ws: aws.ServerConnection) -> None:
        raise RuntimeError("boom")

    routes = {"/": home, "/rooms/<name>": room, "/items/<int:id>": item, "/broken": broken}

    async def main() -> None:
        async with aws.route(routes, HOST, 0) as server:
            port = server.sockets[0].getsockname()[1]
            base = f"ws://{HOST}:{port}"
            async with aws.connect(base + "/") as ws:
                assert await ws.recv() == "home"
            async with aws.connect(base + "/rooms/blue") as ws:
                assert await ws.recv() == "room blue"
            async with aws.connect(base + "/items/41") as ws:
                assert await ws.recv() == "item 42"
            with pytest.raises(InvalidHandshake) as info:
                await aws.connect(base + "/items/x")
            assert info.value.response is not None and info.value.response.status_code == 404
            async with aws.connect(base + "/broken") as ws:
                with pytest.raises(aws.ConnectionClosedError):
                    await ws.recv()
                assert ws.close_code == 1011
            answer = await asyncio.to_thread(raw_get, port, "/nowhere")
            assert answer.startswith(b"HTTP/1.1 404 ") and b"No route for /nowhere" in answer

    with caplog.at_level(logging.ERROR):
        asyncio.run(asyncio.wait_for(main(), 30))
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and "/broken" in failures[0].getMessage() and failures[0].exc_info is not None


def test_asyncio_route_runs_process_request_first() -> None:
    async def private(ws: aws.ServerConnection) -> None:
        await ws.send(ws.username or "")

    async def main() -> None:
        auth = aws.basic_auth("zone", credentials=("ann", "pw"))
        async with aws.route(Map([Rule("/p", endpoint=private)]), HOST, 0, process_request=auth) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(InvalidHandshake) as info:
                await aws.connect(f"ws://{HOST}:{port}/p")
            assert info.value.response is not None and info.value.response.status_code == 401
            async with aws.connect(f"ws://{HOST}:{port}/p",
                                   extra_headers={"Authorization": "Basic YW5uOnB3"}) as ws:
                assert await ws.recv() == "ann"

    asyncio.run(asyncio.wait_for(main(), 30))


# -- threads ----------------------------------------------------------------------------


@contextlib.contextmanager
def running(server: sws.Server) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"ws://{HOST}:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join()


def test_sync_route_dispatches_by_path(caplog: pytest.LogCaptureFixture) -> None:
    def home(ws: sws.ServerConnection) -> None:
        ws.send("home")

    def room(ws: sws.ServerConnection, name: str) -> None:
        assert ws.route is not None and ws.route.rule == "/rooms/<name>"
        ws.send(f"room {name}")

    def item(ws: sws.ServerConnection, id: int) -> None:
        ws.send(f"item {id + 1}")

    def broken(ws: sws.ServerConnection) -> None:
        raise RuntimeError("boom")

    routes = {"/": home, "/rooms/<name>": room, "/items/<int:id>": item, "/broken": broken}
    with caplog.at_level(logging.ERROR), running(sws.route(routes, HOST, 0)) as base:
        with sws.connect(base + "/") as ws:
            assert ws.recv(5) == "home"
        with sws.connect(base + "/rooms/blue") as ws:
            assert ws.recv(5) == "room blue"
        with sws.connect(base + "/items/41") as ws:
            assert ws.recv(5) == "item 42"
        with pytest.raises(InvalidHandshake) as info:
            sws.connect(base + "/items/x")
        assert info.value.response is not None and info.value.response.status_code == 404
        with sws.connect(base + "/broken") as ws:
            with pytest.raises(sws.ConnectionClosedError):
                ws.recv(5)
            assert ws.close_code == 1011
        answer = raw_get(int(base.rsplit(":", 1)[1]), "/rooms")
        assert answer.startswith(b"HTTP/1.1 404 ")
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and "/broken" in failures[0].getMessage() and failures[0].exc_info is not None
