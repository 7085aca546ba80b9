# ruff: noqa: F811  (the TLS fixtures are test_http2's, imported)
"""WebSockets over HTTP/2 for asyncio (wskit.asyncio.http2): peers that break the rules, limits, TLS 1.2,
TCP backpressure and the transport contract of a stream, over real TLS sockets on 127.0.0.1.

A misbehaving server or client is played by the ``h2`` package driven by hand
(:class:`Peer`); the other side is wskit's own client or server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from test_http2 import BUILTINS, HOST, RawH2, block_with, certificate, echo, port_of, run, tls  # noqa: F401

from wskit import InvalidHandshake, Request, Response, hookimpl
from wskit.asyncio import ServerConnection, http2
from wskit.exceptions import ConnectionClosedError
from wskit.frames import Opcode
from wskit.headers import Headers
from wskit.plugin import PluginManager

from helpers import client_frame, parse_frames, server_frame

Script = Callable[["Peer"], Awaitable[None]]


class Peer:
    """One end of an HTTP/2 connection driven by hand with h2 (sends what it is told, unchecked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client_side: bool) -> None:
        self.reader, self.writer = reader, writer
        config = h2.config.H2Configuration(client_side=client_side, header_encoding="utf-8",
                                           validate_outbound_headers=False, normalize_outbound_headers=False,
                                           validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config)
        if not client_side:
            self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        self.events: list[Any] = []

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    async def until(self, found: Callable[[Any], bool]) -> Any:
        """Read until an event matches; return it (``None`` if the connection closes first)."""
        while True:
            for event in self.events:
                if found(event):
                    self.events.remove(event)
                    return event
            data = await self.reader.read(65536)
            if not data:
                return None
            self.events.extend(self.conn.receive_data(data))
            self.flush()

    async def request(self) -> int:
        """Wait for a request; return its stream."""
        event = await self.until(lambda e: isinstance(e, h2.events.RequestReceived))
        return int(event.stream_id)

    def answer(self, stream_id: int, status: str = "200", end: bool = False) -> None:
        self.conn.send_headers(stream_id, [(":status", status)], end_stream=end)
        self.flush()

    async def data(self, stream_id: int, size: int) -> bytes:
        """Read ``size`` bytes of the stream's DATA (acknowledged as they come)."""
        received = b""
        while len(received) < size:
            event = await self.until(lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id)
            assert event is not None, "connection closed"
            self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
            received += event.data
        return received


class ScriptedServer:
    """A TLS server on 127.0.0.1 whose every connection is played by ``script`` (ALPN h2)."""

    def __init__(self, ctx: ssl.SSLContext, script: Script, greet: bool = True) -> None:
        ctx.set_alpn_protocols(["h2"])
        self.ctx, self.script, self.greet = ctx, script, greet
        self.done: asyncio.Queue[BaseException | None] = asyncio.Queue()  # one outcome per connection

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._handle, HOST, 0, ssl=self.ctx)
        self.uri = f"wss://{HOST}:{port_of(self.server)}/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer, client_side=False)
        if self.greet:  # the connection preface: SETTINGS
            peer.conn.initiate_connection()
            peer.flush()
        try:
            await self.script(peer)
        except BaseException as exc:  # reported to the test
            await self.done.put(exc)
        else:
            await self.done.put(None)
        finally:
            writer.close()

    async def outcome(self) -> None:
        """Wait for a connection's script to end; raise what it raised."""
        exc = await self.done.get()
        if exc is not None:
            raise exc


# -- the client: TLS 1.2, servers that close, stall or misbehave -------------------------------------------


def test_a_tls12_server_sending_its_settings_with_the_handshake(tls: Any) -> None:
    server_ctx, client_ctx = tls
    server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # its SETTINGS come with its last handshake message

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx) as server:
            uri = f"wss://{HOST}:{port_of(server)}/"
            for _ in range(3):  # every time, not by chance
                async with http2.connect(uri, ssl=client_ctx()) as ws:
                    assert ws.http_version == "2"
                    assert ws.transport is not None and ws.transport.get_extra_info("ssl_object").version() == "TLSv1.2"
                    await ws.send("over TLS 1.2")
                    assert await ws.recv() == "over TLS 1.2"

    run(main())


def test_a_server_closing_before_its_settings_fails_the_connect(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def close_at_once(peer: Peer) -> None:
        peer.writer.transport.abort()

    async def main() -> None:
        async with ScriptedServer(server_ctx, close_at_once, greet=False) as server:
            with pytest.raises(ConnectionClosedError, match="closed before the server's SETTINGS"):
                await http2.connect(server.uri, ssl=client_ctx())
            await server.outcome()

    run(main())


def test_open_timeout_when_the_server_never_answers_resets_the_stream(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def never_answer(peer: Peer) -> None:
        stream_id = await peer.request()
        reset = await peer.until(lambda e: isinstance(e, h2.events.StreamReset))
        assert (reset.stream_id, reset.error_code) == (stream_id, ErrorCodes.CANCEL)

    async def main() -> None:
        async with ScriptedServer(server_ctx, never_answer) as server:
            with pytest.raises(TimeoutError, match=r"timed out after 2 s opening"):
                await http2.connect(server.uri, ssl=client_ctx(), open_timeout=2)
            await server.outcome()

    run(main())


def test_a_refusal_ending_the_stream_with_its_headers(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def refuse(peer: Peer) -> None:
        peer.answer(await peer.request(), "403", end=True)
        await peer.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))  # the client's GOAWAY

    async def main() -> None:
        async with ScriptedServer(server_ctx, refuse) as server:
            with pytest.raises(InvalidHandshake, match="answered 403") as info:
                await http2.connect(server.uri, ssl=client_ctx())
            assert info.value.response is not None and info.value.response.status_code == 403
            await server.outcome()

    run(main())


def test_a_request_from_the_server_is_refused_and_the_websocket_goes_on(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def push_a_request(peer: Peer) -> None:
        stream_id = await peer.request()
        peer.answer(stream_id)
        # Unasked: HEADERS on a stream of the server's (push is disabled; a request to a client is wrong).
        peer.conn.send_headers(2, [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", HOST)])
        peer.flush()
        reset = await peer.until(lambda e: isinstance(e, h2.events.StreamReset))
        assert (reset.stream_id, reset.error_code) == (2, ErrorCodes.PROTOCOL_ERROR)
        (frame,) = parse_frames(await peer.data(stream_id, 7), masked=True)
        assert frame.data == b"x"
        peer.conn.send_data(stream_id, server_frame(Opcode.TEXT, b"still here"))
        peer.flush()
        (close,) = parse_frames(await peer.data(stream_id, 8), masked=True)  # the client closes
        assert close.opcode == Opcode.CLOSE

    async def main() -> None:
        async with ScriptedServer(server_ctx, push_a_request) as server:
            async with http2.connect(server.uri, ssl=client_ctx(), compression=None) as ws:
                await ws.send("x")
                assert await ws.recv() == "still here"
            await server.outcome()

    run(main())


def test_a_message_held_by_the_stream_window_goes_once_the_server_raises_it(tls: Any) -> None:
    server_ctx, client_ctx = tls
    message = b"m" * 100_000

    async def small_window(peer: Peer) -> None:
        peer.conn.increment_flow_control_window(1 << 20)  # the connection's window is not what holds it
        stream_id = await peer.request()
        peer.answer(stream_id)
        received = b""
        while len(received) < 65535:  # the stream's window, never acknowledged
            event = await peer.until(lambda e: isinstance(e, h2.events.DataReceived))
            received += event.data
        peer.conn.update_settings({h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16})  # not about windows
        peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        peer.flush()
        while len(received) < len(message) + 14:
            event = await peer.until(lambda e: isinstance(e, h2.events.DataReceived))
            received += event.data
        (frame,) = parse_frames(received, masked=True)
        assert frame.data == message
        peer.conn.reset_stream(stream_id, 0x1FF)  # an error code HTTP/2 does not define
        peer.flush()
        await peer.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))

    async def main() -> None:
        async with ScriptedServer(server_ctx, small_window) as server:
            ws = await http2.connect(server.uri, ssl=client_ctx(), compression=None)
            await ws.send(message)
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.code == 1006
            await server.outcome()

    run(main())


def test_connect_over_a_given_socket(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx) as server:
            sock = socket.create_connection((HOST, port_of(server)))
            async with http2.connect(f"wss://localhost:{port_of(server)}/", sock=sock, ssl=client_ctx()) as ws:
                assert ws.http_version == "2" and ws.transport is not None
                assert ws.transport.get_extra_info("peername") == sock.getpeername()
                await ws.send("through the given socket")
                assert await ws.recv() == "through the given socket"

    run(main())


def test_one_stream_per_connection_makes_the_client_open_another(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, max_streams=1) as server:
            uri = f"wss://{HOST}:{port_of(server)}/"
            ctx = client_ctx()
            first = await http2.connect(uri, ssl=ctx, max_streams=1, stream_window=65535)
            second = await http2.connect(uri, ssl=ctx, max_streams=1, stream_window=65535)
            carriers = {ws.transport._carrier for ws in (first, second)}  # type: ignore[union-attr]
            assert len(carriers) == 2 and {ws.stream_id for ws in (first, second)} == {1}
            for ws in (first, second):
                await ws.send(b"z" * 200_000)  # more than the windows: they are refilled
                assert await ws.recv() == b"z" * 200_000
            await first.close()
            await second.close()

    run(main())


def test_two_servers_at_once_each_with_its_own_connection(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx) as a, http2.serve(echo, HOST, 0, ssl=server_ctx) as b:
            ctx = client_ctx()
            uris = [f"wss://{HOST}:{port_of(server)}/" for server in (a, b)]
            ws_a, ws_b = await asyncio.gather(*(http2.connect(uri, ssl=ctx) for uri in uris))
            carrier_b = ws_b.transport._carrier  # type: ignore[union-attr]
            assert ws_a.transport._carrier is not carrier_b  # type: ignore[union-attr]
            await ws_a.close()  # its HTTP/2 connection ends; b's is still there for the next WebSocket
            again = await http2.connect(uris[1], ssl=ctx)
            assert again.transport._carrier is carrier_b  # type: ignore[union-attr]
            await again.send("b")
            assert await again.recv() == "b"
            await again.close()
            await ws_b.close()

    run(main())


def test_a_bad_header_on_a_new_connection_closes_it(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def expect_goaway(peer: Peer) -> None:
        goaway = await peer.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
        assert goaway is not None and goaway.error_code == ErrorCodes.NO_ERROR
        assert not [e for e in peer.events if isinstance(e, h2.events.RequestReceived)]  # no stream was opened

    async def main() -> None:
        async with ScriptedServer(server_ctx, expect_goaway) as server:
            with pytest.raises(ValueError, match="'Upgrade' is not allowed over HTTP/2"):
                await http2.connect(server.uri, ssl=client_ctx(), extra_headers=[("Upgrade", "websocket")])
            await server.outcome()

    run(main())


# -- the server: clients that break the rules ---------------------------------------------------------------


class Ended:
    """A handler that echoes and records how each WebSocket ended."""

    def __init__(self) -> None:
        self.codes: asyncio.Queue[int | None] = asyncio.Queue()
        self.messages: list[Any] = []

    async def __call__(self, ws: ServerConnection) -> None:
        try:
            async for message in ws:
                self.messages.append(message)
                await ws.send(message)
        except ConnectionClosedError:
            pass
        await self.codes.put(ws.close_code)


def test_trailers_from_the_client_end_its_websocket_only(tls: Any) -> None:
    server_ctx, client_ctx = tls
    ended = Ended()

    async def main() -> None:
        async with http2.serve(ended, HOST, 0, ssl=server_ctx, compression=None) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            first, other = raw.request(), raw.request()
            for stream_id in (first, other):
                assert (await raw.response(stream_id))[":status"] == "200"
            raw.send(first, client_frame(Opcode.TEXT, b"last words"))
            assert await raw.data(first) == server_frame(Opcode.TEXT, b"last words")
            raw.conn.send_headers(first, [("x-trailer", "1")], end_stream=True)  # trailers: the request side ends
            raw.flush()
            assert await ended.codes.get() == 1006  # no Close frame: abnormal closure
            raw.send(other, client_frame(Opcode.TEXT, b"fine"))
            assert await raw.data(other) == server_frame(Opcode.TEXT, b"fine")
            raw.close()

    run(main())


@pytest.mark.parametrize("how", ["goaway", "garbage"])
def test_a_client_ending_the_connection_ends_every_websocket_on_it(tls: Any, how: str) -> None:
    server_ctx, client_ctx = tls
    ended = Ended()

    async def main() -> None:
        async with http2.serve(ended, HOST, 0, ssl=server_ctx) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            streams = [raw.request(), raw.request()]
            for stream_id in streams:
                assert (await raw.response(stream_id))[":status"] == "200"
            if how == "goaway":
                raw.conn.close_connection()
                raw.flush()
            else:  # a DATA frame on stream 0: an HTTP/2 connection error
                raw.writer.write(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")
            assert [await ended.codes.get() for _ in streams] == [1006, 1006]
            if how == "garbage":
                goaway = await raw.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
                assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR
            while await raw.reader.read(65536):  # the server closes the TCP connection (after its GOAWAY)
                pass
            assert not server.connections

    run(main())


def test_an_end_of_stream_while_reading_is_paused_comes_after_the_messages(tls: Any) -> None:
    server_ctx, client_ctx = tls
    release = asyncio.Event()
    received: list[Any] = []
    done: asyncio.Queue[int | None] = asyncio.Queue()

    async def slow(ws: ServerConnection) -> None:
        await release.wait()
        try:
            async for message in ws:
                received.append(message)
        except ConnectionClosedError:
            pass
        await done.put(ws.close_code)

    async def main() -> None:
        async with http2.serve(slow, HOST, 0, ssl=server_ctx, compression=None, max_queue=1) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            stream_id = raw.request()
            assert (await raw.response(stream_id))[":status"] == "200"
            for i in range(10):
                raw.send(stream_id, client_frame(Opcode.TEXT, f"m{i}".encode()))
            raw.send(stream_id, b"", end=True)  # no Close frame, the stream ends
            # Wait until the server read it all (its h2 acknowledges the connection's window lazily: ping).
            raw.conn.ping(b"12345678")
            raw.flush()
            await raw.until(lambda e: isinstance(e, h2.events.PingAckReceived))
            (conn,) = server.connections
            assert conn.transport is not None and not conn.transport.is_reading()  # type: ignore[attr-defined]
            release.set()
            assert await done.get() == 1006
            assert received == [f"m{i}" for i in range(10)]  # nothing lost before the end
            raw.close()

    run(main())


async def read(raw: RawH2, stream_id: int, size: int) -> bytes:
    """Read ``size`` bytes of a stream's DATA."""
    received = bytearray()
    while len(received) < size:
        received += await raw.data(stream_id)
    return bytes(received)


async def round_trip(raw: RawH2) -> None:
    """Wait until the server has processed everything sent so far (a PING is answered in order)."""
    raw.conn.ping(b"roundtrp")
    raw.flush()
    await raw.until(lambda e: isinstance(e, h2.events.PingAckReceived))


def test_data_sent_before_the_answer_waits_for_it_and_is_bounded(tls: Any) -> None:
    server_ctx, client_ctx = tls
    gate = asyncio.Event()

    async def process_request(conn: ServerConnection, request: Any) -> None:
        await gate.wait()

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, compression=None, max_size=1000,
                               stream_window=1 << 20, process_request=process_request) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            await raw.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))  # the server's windows
            early, flood = raw.request(), raw.request()
            raw.send(early, client_frame(Opcode.TEXT, b"before the 200"))
            data = client_frame(Opcode.BINARY, b"x" * 70_000)  # max_size + 64 KiB is the bound
            for start in range(0, len(data), 16384):
                raw.send(flood, data[start:start + 16384])
            answer = await raw.response(flood)
            assert answer[":status"] == "400"
            assert b"before the handshake was answered" in await raw.data(flood)
            await round_trip(raw)
            gate.set()
            assert (await raw.response(early))[":status"] == "200"
            assert await raw.data(early) == server_frame(Opcode.TEXT, b"before the 200")
            raw.close()

    run(main())


def test_plain_requests_answered_or_refused_by_process_request(tls: Any, caplog: pytest.LogCaptureFixture) -> None:
    server_ctx, client_ctx = tls
    gate = asyncio.Event()

    async def process_request(conn: ServerConnection, request: Any) -> Any:
        if request.path == "/boom":
            raise RuntimeError("app bug")
        if request.path == "/upload":
            await gate.wait()  # the body arrives meanwhile: not read
            return conn.respond(200, "thanks")
        return None  # not an extended CONNECT, and not for the application either

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, process_request=process_request) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            plain = {":method": "GET", ":protocol": None, "sec-websocket-version": None}
            boom = raw.request("/boom", end=True, **plain)
            other = raw.request("/other", end=True, **plain)
            upload = raw.request("/upload", **{**plain, ":method": "POST"})
            raw.send(upload, b"a body", end=True)
            version = raw.request("/chat", **{"sec-websocket-version": "8"})
            await round_trip(raw)
            gate.set()
            assert (await raw.response(boom))[":status"] == "500"
            assert b"Failed to open a WebSocket connection" in await raw.data(boom)
            answer = await raw.response(other)
            assert (answer[":status"], answer["allow"]) == ("405", "CONNECT")
            assert b"extended CONNECT" in await raw.data(other)
            assert (await raw.response(upload))[":status"] == "200"
            assert await raw.data(upload) == b"thanks"
            assert (await raw.response(version))[":status"] == "426"
            raw.close()

    with caplog.at_level(logging.DEBUG, logger="wskit"):
        run(main())
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("wskit.server")]
    assert any(level == logging.ERROR and "process_request failed" in text for level, text in messages)
    assert any("! invalid extended CONNECT: unsupported Sec-WebSocket-Version '8'" in text for _, text in messages)


class Veto:
    @hookimpl
    def wskit_check_request(self, request: Request) -> Response | None:
        if request.path == "/private":
            return Response(403, "Forbidden", Headers([("X-Why", "private"), ("Connection", "close")]), b"not here")
        return None


def test_a_plugin_refusal_is_sent_on_the_stream(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        plugins = PluginManager([Veto()], builtins=False, entry_points=False)
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, plugin_manager=plugins) as server:
            uri = f"wss://{HOST}:{port_of(server)}"
            with pytest.raises(InvalidHandshake, match="403") as info:
                await http2.connect(uri + "/private", ssl=client_ctx(), plugin_manager=BUILTINS)
            response = info.value.response
            assert response is not None and response.headers["X-Why"] == "private"
            assert "Connection" not in response.headers  # connection-specific: left out over HTTP/2
            async with http2.connect(uri + "/public", ssl=client_ctx(), plugin_manager=BUILTINS) as ws:
                await ws.send("public")
                assert await ws.recv() == "public"

    run(main())


def test_a_stream_reset_while_the_application_decides_gets_no_answer(tls: Any) -> None:
    server_ctx, client_ctx = tls
    gate = asyncio.Event()

    async def process_request(conn: ServerConnection, request: Any) -> Any:
        await gate.wait()
        return conn.respond(200, "late") if request.method == "GET" else None

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, compression=None,
                               process_request=process_request) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            page = raw.request("/", **{":method": "GET", ":protocol": None, "sec-websocket-version": None})
            socket_ = raw.request()
            for stream_id in (page, socket_):
                raw.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            raw.flush()
            await round_trip(raw)
            gate.set()
            alive = raw.request()  # the connection goes on
            assert (await raw.response(alive))[":status"] == "200"
            raw.send(alive, client_frame(Opcode.TEXT, b"ok"))
            assert await raw.data(alive) == server_frame(Opcode.TEXT, b"ok")
            assert not [e for e in raw.events if getattr(e, "stream_id", None) in (page, socket_)]
            raw.close()

    run(main())


def test_a_window_update_for_a_refused_stream_in_the_same_read(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, compression=None) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            stream_id = raw.conn.get_next_available_stream_id()
            raw.conn.send_headers(stream_id, block_with(**{":authority": HOST, "sec-websocket-version": "8"}))
            raw.conn.increment_flow_control_window(1000, stream_id)
            raw.flush()  # one write: the server reads both frames at once, and refuses the stream on the first
            answer = await raw.response(stream_id)
            assert answer[":status"] == "426"
            good = raw.request()
            assert (await raw.response(good))[":status"] == "200"
            raw.close()

    run(main())


def test_empty_answers_end_the_stream_with_their_headers(tls: Any) -> None:
    server_ctx, client_ctx = tls

    def process_request(conn: ServerConnection, request: Any) -> Response:
        return Response(204, "No Content", Headers(), b"")

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, process_request=process_request) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            stream_id = raw.request("/", **{":method": "GET", ":protocol": None, "sec-websocket-version": None})
            response = await raw.until(lambda e: isinstance(e, h2.events.ResponseReceived))
            assert dict(response.headers)[":status"] == "204" and response.stream_ended is not None
            assert response.stream_id == stream_id
            raw.close()

    run(main())


def test_select_subprotocol_gets_the_http2_connection(tls: Any) -> None:
    server_ctx, client_ctx = tls
    seen: list[Any] = []

    def select(conn: ServerConnection, offered: Any) -> str | None:
        seen.append((type(conn).__name__, conn.http_version, list(offered)))
        return offered[-1]

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, select_subprotocol=select) as server:
            uri = f"wss://{HOST}:{port_of(server)}/"
            async with http2.connect(uri, ssl=client_ctx(), subprotocols=["a", "b"]) as ws:
                assert ws.subprotocol == "b"
        assert seen == [("H2ServerConnection", "2", ["a", "b"])]

    run(main())


@pytest.mark.parametrize(("options", "message"), [
    ({"stream_window": 65534}, "stream_window must be an int from 65535"),
    ({"stream_window": 2**31}, "stream_window must be an int from 65535"),
    ({"max_streams": 0}, "max_streams must be a positive int"),
])
def test_window_and_stream_limits_are_checked(tls: Any, options: dict[str, int], message: str) -> None:
    server_ctx, _ = tls
    with pytest.raises(ValueError, match=message):
        http2.connect("wss://127.0.0.1:1/", **options)  # type: ignore[arg-type]

    async def main() -> None:
        with pytest.raises(ValueError, match=message):
            http2.serve(echo, HOST, 0, ssl=server_ctx, **options)  # type: ignore[arg-type]

    run(main())


def test_a_stream_follows_the_asyncio_transport_contract(tls: Any) -> None:
    server_ctx, client_ctx = tls
    checked: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        transport = ws.transport
        assert isinstance(transport, http2.StreamTransport)
        client_address = transport.get_extra_info("peername")
        facts = (transport.get_extra_info("stream_id"), transport.get_extra_info("http_version"),
                 transport.get_write_buffer_limits(), transport.get_write_buffer_size(), transport.is_reading())
        transport.set_write_buffer_limits(high=8192)
        limits = transport.get_write_buffer_limits()
        transport.resume_reading()  # already reading: nothing changes
        transport.write(b"")  # nothing to send
        assert transport.can_write_eof()
        transport.write_eof()  # END_STREAM; the WebSocket core is bypassed here, on purpose
        transport.write_eof()
        transport.write(b"after the end")  # ignored, as by any closing transport
        transport.writelines([b"after", b"the end"])
        transport.abort()  # RST_STREAM CANCEL
        transport.abort()
        await ws.wait_closed()
        await checked.put((client_address, facts, limits, transport.is_closing(), transport))

    async def main() -> None:
        async with http2.serve(handler, HOST, 0, ssl=server_ctx, write_limit=4096) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            stream_id = raw.request()
            assert (await raw.response(stream_id))[":status"] == "200"
            await raw.until(lambda e: isinstance(e, h2.events.StreamEnded))
            reset = await raw.until(lambda e: isinstance(e, h2.events.StreamReset))
            assert (reset.stream_id, reset.error_code) == (stream_id, ErrorCodes.CANCEL)
            assert not [e for e in raw.events if isinstance(e, h2.events.DataReceived) and e.data]
            client_address, facts, limits, closing, transport = await checked.get()
            assert client_address == raw.writer.get_extra_info("sockname")
            assert facts == (stream_id, "2", (1024, 4096), 0, True)
            assert limits == (2048, 8192) and closing
            raw.close()
            await transport._carrier.closed.wait()
            assert transport.get_extra_info("peername", "gone") == "gone"  # the HTTP/2 connection is closed

    run(main())


def test_data_after_the_server_closed_is_dropped_and_the_connection_window_given_back(tls: Any) -> None:
    server_ctx, client_ctx = tls
    ended = Ended()

    async def close_at_once(ws: ServerConnection) -> None:
        await ws.close()
        await ended.codes.put(ws.close_code)

    async def main() -> None:
        async with http2.serve(close_at_once, HOST, 0, ssl=server_ctx, compression=None, stream_window=65535,
                               max_streams=1) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            stream_id = raw.request()
            assert (await raw.response(stream_id))[":status"] == "200"
            (close,) = parse_frames(await raw.data(stream_id), masked=False)
            assert close.opcode == Opcode.CLOSE
            raw.send(stream_id, client_frame(Opcode.CLOSE, close.data))
            await raw.until(lambda e: isinstance(e, h2.events.StreamEnded))  # the server closed its side
            # The client goes on sending (within the stream's window): dropped, but the connection's
            # window is given back, for the other streams.
            for _ in range(3):
                raw.send(stream_id, b"\x00" * 16000)
            update = await raw.until(lambda e: isinstance(e, h2.events.WindowUpdated) and e.stream_id == 0)
            assert update.delta >= 3 * 16000
            raw.send(stream_id, b"", end=True)  # the client closes its side: the WebSocket is closed
            assert await ended.codes.get() == 1000
            assert not server.connections
            raw.close()

    run(main())


def test_a_client_that_does_not_read_holds_up_the_sender_through_tcp(tls: Any) -> None:
    server_ctx, client_ctx = tls
    count, size = 64, 64 * 1024
    sent: list[int] = []

    async def flood(ws: ServerConnection) -> None:
        assert ws.transport is not None
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        for i in range(count):
            await ws.send(bytes([i]) * size)
            sent.append(i)
        await ws.wait_closed()

    async def main() -> None:
        async with http2.serve(flood, HOST, 0, ssl=server_ctx, compression=None) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # small buffers: TCP fills up soon
            sock.connect((HOST, port_of(server)))
            ctx = client_ctx()
            ctx.set_alpn_protocols(["h2"])
            raw = RawH2(*await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="localhost"))
            raw.conn.initiate_connection()
            # The HTTP/2 windows allow it all: only TCP can hold the server up.
            raw.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
            raw.conn.increment_flow_control_window(2**31 - 1 - 65535)
            stream_id = raw.request()
            assert (await raw.response(stream_id))[":status"] == "200"
            (conn,) = server.connections
            carrier = conn.transport._carrier  # type: ignore[union-attr]
            while not carrier.tcp_paused:  # until the server's TLS write buffer is full
                await asyncio.sleep(0.01)
            assert len(sent) < count  # the sender waits ...
            assert carrier.transport.get_write_buffer_size() < 1024 * 1024  # ... nothing piles up meanwhile ...
            received = await read(raw, stream_id, count * (size + 10))  # ... until the client reads
            frames = parse_frames(received, masked=False)
            assert [frame.data for frame in frames] == [bytes([i]) * size for i in range(count)]
            assert len(sent) == count
            raw.close()

    run(main())


def test_without_h2_the_import_error_says_what_to_install() -> None:
    code = ("import sys\n"
            "sys.modules['h2'] = None  # as if h2 were not installed\n"
            "import wskit.asyncio  # the rest of wskit works without it\n"
            "try:\n"
            "    import wskit.asyncio.http2\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
            "    print(type(exc.__cause__).__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout == ("WebSockets over HTTP/2 need the h2 package: pip install 'wskit[http2]'\n"
                             "ModuleNotFoundError\n")


def test_a_tls_handshake_finishing_while_the_server_closes_gets_a_goaway(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        # This client never answers the server's TLS close_notify: from Python 3.12.1 the
        # server's wait_closed() ends once close_timeout aborts the connection.
        server = await http2.serve(echo, HOST, 0, ssl=server_ctx, close_timeout=0.5)
        reader, writer = await asyncio.open_connection(HOST, port_of(server))
        # TLS by hand (memory BIOs): the handshake is under way on the server when it closes.
        ctx = client_ctx()
        ctx.set_alpn_protocols(["h2"])
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls_client = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            tls_client.do_handshake()
        writer.write(outgoing.read())  # ClientHello
        incoming.write(await reader.read(65536))  # ServerHello ...: the server took the connection
        server.close()
        while True:  # the rest of the server's flight may take more reads
            try:
                tls_client.do_handshake()
                break
            except ssl.SSLWantReadError:
                writer.write(outgoing.read())
                incoming.write(await reader.read(65536))
        writer.write(outgoing.read())  # Finished: the server's handshake completes now
        h2_client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        h2_client.initiate_connection()
        events: list[Any] = []
        while not any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
            data = await reader.read(65536)
            assert data, "closed without a GOAWAY"
            incoming.write(data)
            try:
                while plain := tls_client.read(65536):  # every TLS record read so far
                    events += h2_client.receive_data(plain)
            except ssl.SSLWantReadError:
                pass
        assert tls_client.selected_alpn_protocol() == "h2"
        await server.wait_closed()
        writer.close()

    run(main())


def test_a_page_answer_ends_with_end_stream_whenever_the_request_ended(tls: Any) -> None:
    server_ctx, client_ctx = tls
    big = b"p" * 100_000  # more than the client's stream window: it goes out as the client reads

    def process_request(conn: ServerConnection, request: Any) -> Response:
        body = big if request.path == "/big" else b"small page"
        return Response(200, "OK", Headers([("Content-Type", "text/plain")]), body)

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, process_request=process_request) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            get = {":method": "GET", ":protocol": None, "sec-websocket-version": None}
            small = raw.request("/small", end=True, **get)  # as browsers send a GET: END_STREAM at once
            large = raw.request("/big", **get)
            assert (await raw.response(large))[":status"] == "200"
            raw.send(large, b"", end=True)  # the request side ends while the answer waits for the window
            await round_trip(raw)
            for stream_id, body in ((small, b"small page"), (large, big)):
                assert await read(raw, stream_id, len(body)) == body
                ended = await raw.until(lambda e, s=stream_id: isinstance(e, (h2.events.StreamEnded,
                                                                              h2.events.StreamReset))
                                        and e.stream_id == s)
                assert isinstance(ended, h2.events.StreamEnded)  # complete: not reset
            raw.close()

    run(main())
