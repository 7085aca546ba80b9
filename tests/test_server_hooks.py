"""Server names python-websockets users type, in both layers: process_response, server_header,
INFO logs of open/close, the Unix socket file removed on stop, keepalive latency and ping()'s RTT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wskit.asyncio as aws
import wskit.sync as sws
from wskit.defaults import USER_AGENT
from wskit.events import Request, Response
from wskit.exceptions import InvalidHandshake
from wskit.headers import Headers

HOST = "127.0.0.1"


def add_header(connection: Any, request: Request, response: Response) -> Response | None:
    if response.status_code == 101:
        response.headers["X-Seen"] = request.path
        return None
    return Response(response.status_code, response.reason_phrase, Headers([("X-Replaced", "yes")]), b"replaced\n")


def refuse_101(connection: Any, request: Request, response: Response) -> Response | None:
    return Response(403, "Forbidden", Headers(), b"no\n") if request.path == "/no" else None


def teapot(connection: Any, request: Request) -> Response | None:
    return connection.respond(418, "tea\n") if request.path == "/tea" else None


# -- asyncio -----------------------------------------------------------------------------


async def ahello(ws: aws.ServerConnection) -> None:
    await ws.send("hello")


def test_asyncio_process_response_and_server_header() -> None:
    async def async_refuse(connection: Any, request: Request, response: Response) -> Response | None:
        await asyncio.sleep(0)
        return refuse_101(connection, request, response)

    async def main() -> None:
        async with aws.serve(ahello, HOST, 0, process_request=teapot, process_response=add_header,
                             server_header="demo/1") as server:
            uri = f"ws://{HOST}:{server.sockets[0].getsockname()[1]}"
            async with aws.connect(uri + "/path") as ws:
                assert ws.response is not None
                assert ws.response.headers["X-Seen"] == "/path" and ws.response.headers["Server"] == "demo/1"
                assert await ws.recv() == "hello"
            with pytest.raises(InvalidHandshake) as info:
                await aws.connect(uri + "/tea")
            assert info.value.response is not None
            assert info.value.response.headers["X-Replaced"] == "yes" and info.value.response.body == b"replaced\n"
            assert info.value.response.headers["Server"] == "demo/1"
        async with aws.serve(ahello, HOST, 0, process_response=async_refuse, server_header=None) as server:
            uri = f"ws://{HOST}:{server.sockets[0].getsockname()[1]}"
            async with aws.connect(uri + "/") as ws:
                assert ws.response is not None and "Server" not in ws.response.headers
            with pytest.raises(InvalidHandshake) as info:
                await aws.connect(uri + "/no")
            assert info.value.response is not None and info.value.response.status_code == 403
        async with aws.serve(ahello, HOST, 0) as server:  # the default
            async with aws.connect(f"ws://{HOST}:{server.sockets[0].getsockname()[1]}/") as ws:
                assert ws.response is not None and ws.response.headers["Server"] == USER_AGENT

    asyncio.run(asyncio.wait_for(main(), 30))


@pytest.mark.parametrize("serve", [aws.serve, sws.serve])
def test_bad_server_header_and_process_response_types(serve: Any) -> None:
    with pytest.raises(TypeError, match="server_header must be"):
        serve(ahello, HOST, 0, server_header="bad\r\nX: y")
    with pytest.raises(TypeError, match="process_response must be a function"):
        serve(ahello, HOST, 0, process_response="no")


def test_asyncio_logs_open_and_close_at_info(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with aws.serve(ahello, HOST, 0) as server:
            async with aws.connect(f"ws://{HOST}:{server.sockets[0].getsockname()[1]}/") as ws:
                await ws.recv()
                await ws.wait_closed()
            while server._connections:
                await asyncio.sleep(0.001)

    with caplog.at_level(logging.INFO, logger="wskit.server"):
        asyncio.run(asyncio.wait_for(main(), 30))
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name == "wskit.server"]
    assert any(m.startswith("server listening on 127.0.0.1:") for m in messages)
    assert sum(m.endswith("] connection open") for m in messages) == 1
    assert sum(m.endswith("] connection closed") for m in messages) == 1


def test_asyncio_unix_socket_file_removed_on_stop(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")

    async def main() -> None:
        async with aws.unix_serve(ahello, path):
            assert os.path.exists(path)
            async with aws.unix_connect(path) as ws:
                assert await ws.recv() == "hello"
        assert not os.path.exists(path)
        async with aws.serve(ahello, unix=path):
            assert os.path.exists(path)
        assert not os.path.exists(path)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_asyncio_latency_after_keepalive_and_ping_rtt() -> None:
    got_latency = asyncio.Event()

    async def handler(ws: aws.ServerConnection) -> None:
        while ws.latency == 0.0:  # set by the keepalive ping's pong
            await asyncio.sleep(0.005)
        got_latency.set()
        await ws.wait_closed()

    async def main() -> None:
        async with aws.serve(handler, HOST, 0, ping_interval=0.02) as server:
            async with aws.connect(f"ws://{HOST}:{server.sockets[0].getsockname()[1]}/") as ws:
                await asyncio.wait_for(got_latency.wait(), 10)
                (conn,) = server.connections
                assert 0 < conn.latency < 5
                rtt = await asyncio.wait_for(await ws.ping(), 10)
                assert isinstance(rtt, float) and 0 < rtt < 5 and ws.latency == rtt

    asyncio.run(asyncio.wait_for(main(), 30))


# -- threads ----------------------------------------------------------------------------


@contextlib.contextmanager
def running(server: sws.Server) -> Iterator[sws.Server]:
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()


def hello(ws: sws.ServerConnection) -> None:
    ws.send("hello")


def uri_of(server: sws.Server) -> str:
    return f"ws://{HOST}:{server.socket.getsockname()[1]}"


def test_sync_process_response_and_server_header() -> None:
    with running(sws.serve(hello, HOST, 0, process_request=teapot, process_response=add_header,
                           server_header="demo/1")) as server:
        with sws.connect(uri_of(server) + "/path") as ws:
            assert ws.response is not None
            assert ws.response.headers["X-Seen"] == "/path" and ws.response.headers["Server"] == "demo/1"
            assert ws.recv(5) == "hello"
        with pytest.raises(InvalidHandshake) as info:
            sws.connect(uri_of(server) + "/tea")
        assert info.value.response is not None
        assert info.value.response.headers["X-Replaced"] == "yes" and info.value.response.body == b"replaced\n"
        assert info.value.response.headers["Server"] == "demo/1"
    with running(sws.serve(hello, HOST, 0, process_response=refuse_101, server_header=None)) as server:
        with sws.connect(uri_of(server) + "/") as ws:
            assert ws.response is not None and "Server" not in ws.response.headers
        with pytest.raises(InvalidHandshake) as info:
            sws.connect(uri_of(server) + "/no")
        assert info.value.response is not None and info.value.response.status_code == 403


def test_sync_logs_open_and_close_at_info(caplog: pytest.LogCaptureFixture) -> None:
    closed = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "connection closed":
                closed.set()

    watch = Watch()
    logging.getLogger("wskit.sync").addHandler(watch)
    try:
        with caplog.at_level(logging.INFO, logger="wskit.sync"), running(sws.serve(hello, HOST, 0)) as server:
            with sws.connect(uri_of(server) + "/") as ws:
                ws.recv(5)
            assert closed.wait(10)
    finally:
        logging.getLogger("wskit.sync").removeHandler(watch)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO and r.name == "wskit.sync"]
    assert any(m.startswith("server listening on 127.0.0.1:") for m in messages)
    # The client and the server both log on wskit.sync: one line each when opening and closing.
    assert messages.count("connection open") == 2
    assert messages.count("connection closed") == 1 and messages.count("connection closed (code 1000)") == 1


def test_sync_unix_socket_file_removed_on_stop(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    with running(sws.unix_serve(hello, path)):
        assert os.path.exists(path)
        with sws.unix_connect(path) as ws:
            assert ws.recv(5) == "hello"
    assert not os.path.exists(path)
    with running(sws.serve(hello, unix=path)):
        assert os.path.exists(path)
    assert not os.path.exists(path)


def test_sync_latency_after_keepalive_and_ping_rtt() -> None:
    def handler(ws: sws.ServerConnection) -> None:
        ws.wait_closed()

    with running(sws.serve(handler, HOST, 0, ping_interval=0.02)) as server:
        with sws.connect(uri_of(server) + "/") as ws:
            deadline = time.monotonic() + 10
            while not server.connections or next(iter(server.connections)).latency == 0.0:
                assert time.monotonic() < deadline, "no keepalive pong"
                time.sleep(0.005)
            assert 0 < next(iter(server.connections)).latency < 5
            event = ws.ping()
            assert isinstance(event, sws.PingEvent)
            # The Pong may already be in (the reading thread runs meanwhile):
            # once the event is set, its latency is there.
            was_set = event.is_set()
            assert not was_set or event.latency is not None
            assert event.wait(10)
            assert event.latency is not None and 0 < event.latency < 5 and ws.latency == event.latency
