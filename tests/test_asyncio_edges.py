"""wskit.asyncio at its edges: what a user or a peer can make happen that the main
tests do not (backpressure on every kind of send, process_request and
process_response going wrong, shutdown variants, debug logging, Unix sockets,
proxies that hang up), over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_asyncio import HOST, RawServer, arun, echo, port_of, raw_connect, read_close, until, url

from wskit import Request, Response
from wskit.asyncio import ConnectionClosedOK, ServerConnection, connect, route, serve, unix_connect, unix_serve
from wskit.exceptions import InvalidHandshake, ProxyError
from wskit.frames import Opcode

from helpers import server_frame

MIB = 1024 * 1024


# -- sending -------------------------------------------------------------------


def test_repr_str_subclass_and_iterating_the_message_iterator() -> None:
    class Name(str):
        pass

    async def main() -> None:
        async with serve(echo, HOST, 0) as server:
            async with connect(url(server)) as ws:
                assert repr(ws) == f"<ClientConnection {ws.id} OPEN>"
                await ws.send(Name("a str subclass"))  # sent as text
                messages = aiter(ws)
                assert aiter(messages) is messages  # an async iterator is its own iterator
                async for message in messages:
                    assert type(message) is str and message == "a str subclass"
                    break

    arun(main())


def test_send_waits_for_the_fragmented_message_under_way() -> None:
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            received.put_nowait(message)

    async def main() -> None:
        started, gate = asyncio.Event(), asyncio.Event()

        async def fragments() -> AsyncIterator[str]:
            yield "frag"
            started.set()
            await gate.wait()
            yield "ments"

        async with serve(handler, HOST, 0) as server:
            async with connect(url(server)) as ws:
                first = asyncio.create_task(ws.send(fragments()))
                await started.wait()
                second = asyncio.create_task(ws.send("after"))
                await asyncio.sleep(0)  # second runs its first step: it waits for the first
                assert not second.done()
                gate.set()
                await asyncio.gather(first, second)
                assert [await received.get(), await received.get()] == ["fragments", "after"]

    arun(main())


def test_send_ping_and_pong_wait_while_the_write_buffer_is_over_write_limit() -> None:
    """A peer that does not read: a fragmented send, a ping and a pong all wait, then all complete."""
    gate = asyncio.Event()
    got: asyncio.Queue[Any] = asyncio.Queue()
    chunk = b"\x01" * (8 * MIB)  # more than the kernel's socket buffers take

    async def handler(ws: ServerConnection) -> None:
        await gate.wait()
        got.put_nowait(await ws.recv())
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, HOST, 0, compression=None, max_size=None) as server:
            async with connect(url(server), compression=None, write_limit=16 * 1024) as ws:
                sending = asyncio.create_task(ws.send([chunk, chunk, chunk]))
                await until(lambda: ws.transport is not None and ws.transport.get_write_buffer_size() > 16 * 1024)
                pinging = asyncio.create_task(ws.ping(b"p"))
                ponging = asyncio.create_task(ws.pong(b"heartbeat"))
                await asyncio.sleep(0)
                assert not sending.done() and not pinging.done() and not ponging.done()
                gate.set()
                await sending
                latency = await (await pinging)
                await ponging
                assert latency >= 0
                message = await got.get()
                assert len(message) == 3 * len(chunk) and message[:1] == b"\x01"

    arun(main(), timeout=60)


def test_fragmented_send_ends_with_connection_closed_when_the_peer_closes_meanwhile() -> None:
    async def close_at_once(ws: ServerConnection) -> None:
        await ws.close()

    async def main() -> None:
        async with serve(close_at_once, HOST, 0) as server:
            ws = await connect(url(server))

            async def fragments() -> AsyncIterator[str]:
                yield "first"
                await ws.wait_closed()
                yield "second"

            with pytest.raises(ConnectionClosedOK):
                await ws.send(fragments())
            assert ws.close_code == 1000

    arun(main())


def test_pong_after_close_raises_connection_closed() -> None:
    async def main() -> None:
        async with serve(echo, HOST, 0) as server:
            ws = await connect(url(server))
            await ws.close()
            with pytest.raises(ConnectionClosedOK):
                await ws.pong(b"late")

    arun(main())


def test_keepalive_without_ping_timeout_still_measures_latency() -> None:
    async def main() -> None:
        async with serve(echo, HOST, 0) as server:
            async with connect(url(server), ping_interval=0.02, ping_timeout=None) as ws:
                await until(lambda: ws.latency > 0)
                await ws.send("still open")
                assert await ws.recv() == "still open"

    arun(main())


# -- debug logging ---------------------------------------------------------------


def test_debug_lines_for_pings_violations_timeouts_and_refusals(caplog: pytest.LogCaptureFixture) -> None:
    async def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(403, "no")

    async def main() -> None:
        async with serve(echo, HOST, 0, logger="wskit.test.dbg", close_timeout=0.2, open_timeout=0.2) as server:
            async with connect(url(server)) as ws:
                await (await ws.ping(b"hello"))  # "< PING" on the server
            reader, writer, _ = await raw_connect(port_of(server))
            writer.write(server_frame(Opcode.TEXT, b"unmasked"))  # a protocol error
            assert (await read_close(reader, masked=False))[0] == 1002
            writer.close()
            # A request that is no upgrade.
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 426")
            writer.close()
            # A client that never completes its request (open_timeout).
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            assert await reader.read() == b""
            writer.close()
            # A client that never answers the server's Close (close_timeout).
            reader, writer, _ = await raw_connect(port_of(server))
            server.close()
            assert (await read_close(reader, masked=False))[0] == 1001
            assert await reader.read() == b""
            writer.close()
            await server.wait_closed()
        async with serve(echo, HOST, 0, process_request=refuse) as server:
            with pytest.raises(InvalidHandshake):
                await connect(url(server), logger="wskit.test.dbg")

    with caplog.at_level(logging.DEBUG, logger="wskit.test.dbg"):
        arun(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "wskit.test.dbg"]
    for expected in ("< PING b'hello'", "! protocol error", "! invalid opening request",
                     "! opening handshake timed out", "! close timeout: aborting the transport",
                     "! opening handshake failed"):
        assert any(expected in line for line in lines), (expected, lines)


# -- the opening handshake on the server -----------------------------------------------


def test_process_request_may_close_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    handled: list[object] = []

    async def process_request(connection: ServerConnection, request: Request) -> None:
        await connection.close()

    async def handler(ws: ServerConnection) -> None:
        handled.append(ws)

    async def main() -> None:
        async with serve(handler, HOST, 0, process_request=process_request) as server:
            with pytest.raises(InvalidHandshake, match="connection closed before any response"):
                await connect(url(server))
        assert handled == []

    with caplog.at_level(logging.ERROR, logger="wskit.server"):
        arun(main())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # nothing failed


def test_client_gone_while_process_response_runs(caplog: pytest.LogCaptureFixture) -> None:
    handled: list[object] = []
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def process_response(connection: ServerConnection, request: Request, response: Response) -> None:
        await connection.wait_closed()  # the client gives up meanwhile
        seen.put_nowait("client gone")

    async def handler(ws: ServerConnection) -> None:
        handled.append(ws)

    async def main() -> None:
        async with serve(handler, HOST, 0, process_response=process_response) as server:
            with pytest.raises(TimeoutError):
                await connect(url(server), open_timeout=0.2)
            assert await seen.get() == "client gone"
        assert handled == []

    with caplog.at_level(logging.ERROR, logger="wskit.server"):
        arun(main())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_process_request_slower_than_open_timeout_is_cancelled() -> None:
    outcome: asyncio.Queue[str] = asyncio.Queue()

    async def process_request(connection: ServerConnection, request: Request) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.put_nowait("cancelled")
            raise

    async def main() -> None:
        async with serve(echo, HOST, 0, process_request=process_request, open_timeout=0.1) as server:
            with pytest.raises(InvalidHandshake, match="connection closed before any response"):
                await connect(url(server), open_timeout=10)
            assert await outcome.get() == "cancelled"

    arun(main())


def test_process_request_and_process_response_errors_give_500(caplog: pytest.LogCaptureFixture) -> None:
    async def deny(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(403, "denied")

    def broken_response(connection: ServerConnection, request: Request, response: Response) -> Response:
        raise RuntimeError("process_response bug")

    def wrong_request(connection: ServerConnection, request: Request) -> Any:
        return "not a response"

    def wrong_response(connection: ServerConnection, request: Request, response: Response) -> Any:
        return 101

    async def status(**options: Any) -> int:
        async with serve(echo, HOST, 0, **options) as server:
            with pytest.raises(InvalidHandshake) as info:
                await connect(url(server))
            assert info.value.response is not None
            return info.value.response.status_code

    async def main() -> None:
        assert await status(process_request=deny, process_response=broken_response) == 500
        assert await status(process_request=wrong_request) == 500
        assert await status(process_response=wrong_response) == 500

    with caplog.at_level(logging.ERROR, logger="wskit.server"):
        arun(main())
    messages = [(r.getMessage()[11:], str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records]
    assert ("process_response failed", "process_response bug") in messages
    assert ("opening handshake failed",
            "process_request must return a wskit.Response or None, not str") in messages
    assert ("opening handshake failed",
            "process_response must return a wskit.Response or None, not int") in messages


def test_plain_http_request_with_a_failing_process_request_gets_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(connection: ServerConnection, request: Request) -> None:
        raise RuntimeError("health check bug")

    async def main() -> None:
        async with serve(echo, HOST, 0, process_request=broken) as server:
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
            assert answer.endswith(b"Failed to open a WebSocket connection.\n")

    with caplog.at_level(logging.ERROR, logger="wskit.server"):
        arun(main())
    assert any(r.getMessage().endswith("] process_request failed") and r.exc_info for r in caplog.records)


def test_server_header_response_and_unknown_status() -> None:
    async def handler(ws: ServerConnection) -> None:
        assert ws.response is not None
        await ws.send(f"{ws.response.status_code} {ws.response.headers['Server']}")

    async def odd(connection: ServerConnection, request: Request) -> Response | None:
        return connection.respond(599, "odd") if request.path == "/odd" else None

    async def main() -> None:
        async with serve(handler, HOST, 0, server_header="edge/1", open_timeout=None, process_request=odd) as server:
            async with connect(url(server)) as ws:
                assert ws.response is not None and ws.response.headers["Server"] == "edge/1"
                assert await ws.recv() == "101 edge/1"
            with pytest.raises(InvalidHandshake) as info:
                await connect(url(server, "/odd"))
            assert info.value.response is not None
            assert (info.value.response.status_code, info.value.response.body) == (599, b"odd")
            # Without open_timeout, an invalid request is answered and closed all the same.
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.read()).startswith(b"HTTP/1.1 426")
            writer.close()

    arun(main())


# -- closing the server ------------------------------------------------------------------


def test_close_without_closing_connections_lets_handlers_finish() -> None:
    async def main() -> None:
        server = await serve(echo, HOST, 0)
        async with server:  # a Server closes itself on exit too
            async with connect(url(server)) as ws:
                waiters = [asyncio.create_task(server.wait_closed()) for _ in range(2)]
                await asyncio.sleep(0)
                server.close(close_connections=False)
                await ws.send("still served")
                assert await ws.recv() == "still served"
            await asyncio.gather(*waiters)
            assert not server.is_serving()
            assert ws.close_code == 1000

    arun(main())


def test_close_ends_connections_still_in_the_opening_handshake() -> None:
    async def main() -> None:
        server = await serve(echo, HOST, 0)
        reader, writer = await asyncio.open_connection(HOST, port_of(server))
        writer.write(b"GET / HTTP/1.1\r\n")  # a request not finished yet
        await until(lambda: len(server._connections) == 1)
        server.close()
        await server.wait_closed()
        try:  # closed with the request unread: EOF, or a reset
            assert await reader.read() == b""
        except ConnectionResetError:
            pass
        writer.close()

    arun(main())


def test_serve_argument_errors_and_unix_reuse_port_false(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="give host and port, or unix=, not both"):
        serve(echo, HOST, 0, unix=str(tmp_path / "s"))
    with pytest.raises(ValueError, match="reuse_port applies to TCP servers"):
        serve(echo, unix=str(tmp_path / "s"), reuse_port=True)

    async def main() -> None:
        path = str(tmp_path / "ok.sock")
        async with serve(echo, unix=path, reuse_port=False):
            async with unix_connect(path) as ws:
                await ws.send("unix")
                assert await ws.recv() == "unix"

    arun(main())


def test_unix_socket_file_removed_or_replaced_before_close(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        path = tmp_path / "gone.sock"
        async with unix_serve(echo, str(path)):
            path.unlink()  # removed by someone else: nothing to do at close
        replaced = tmp_path / "replaced.sock"
        async with unix_serve(echo, str(replaced)):
            replaced.unlink()
            replaced.write_text("not a socket")  # a file that is not ours any more: kept
        assert replaced.read_text() == "not a socket"

    with caplog.at_level(logging.WARNING, logger="wskit.server"):
        arun(main())
    assert not [r for r in caplog.records if r.name == "wskit.server" and r.levelno >= logging.WARNING]


def test_route_handler_seeing_the_close_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("werkzeug")
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def reader(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosedOK:
            seen.put_nowait("closed")
            raise

    def allow(connection: ServerConnection, request: Request) -> None:
        return None

    async def main() -> None:
        async with route({"/": reader}, HOST, 0, process_request=allow) as server:
            async with connect(url(server)):
                pass
            assert await seen.get() == "closed"

    with caplog.at_level(logging.ERROR, logger="wskit.server"):
        arun(main())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- the client ---------------------------------------------------------------------------


def test_unix_connect_refused_and_uri_from_config(tmp_path: Path) -> None:
    config_module = pytest.importorskip("wskit.config")
    config = config_module.loads("client:\n  uri: ws://localhost/from-config\n")
    path = str(tmp_path / "s.sock")

    async def handler(ws: ServerConnection) -> None:
        await ws.send(ws.request.path if ws.request is not None else "")

    async def refuse(connection: ServerConnection, request: Request) -> Response | None:
        return connection.respond(403, "no") if request.path == "/refused" else None

    async def main() -> None:
        async with unix_serve(handler, path, process_request=refuse):
            async with unix_connect(path, config=config) as ws:
                assert await ws.recv() == "/from-config"
            with pytest.raises(InvalidHandshake) as info:
                await unix_connect(path, "ws://localhost/refused")
            assert info.value.response is not None and info.value.response.status_code == 403

    arun(main())


def test_proxy_that_hangs_up_before_answering_gives_proxy_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the CONNECT request
        writer.close()

    async def main() -> None:
        async with RawServer(hang_up) as proxy:
            with pytest.raises(ProxyError) as info:
                await connect(f"ws://{HOST}:9/", proxy=f"http://{HOST}:{proxy.port}")
            assert f"{HOST}:{proxy.port}" in str(info.value)

    arun(main())


