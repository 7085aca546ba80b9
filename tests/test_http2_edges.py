"""WebSockets over HTTP/2 for asyncio (wskit.asyncio.http2): peers that break the rules, limits, TLS 1.2,
TCP backpressure and the transport contract of a stream, over real TLS sockets on 127.0.0.1.

A misbehaving server or client is played by the ``h2`` package driven by hand
(:class:`Peer`); the other side is wskit's own client or server.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes

from wskit import InvalidHandshake
from wskit.asyncio import ServerConnection, http2
from wskit.exceptions import ConnectionClosedError
from wskit.frames import Opcode

from helpers import client_frame, parse_frames, server_frame
from test_http2 import BUILTINS, HOST, RawH2, certificate, echo, port_of, run, tls  # noqa: F401

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
            with pytest.raises(TimeoutError, match="timed out after 0.5 s opening"):
                await http2.connect(server.uri, ssl=client_ctx(), open_timeout=0.5)
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
