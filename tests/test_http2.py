"""WebSockets over HTTP/2 (RFC 8441): the sans-I/O handshake (wskit.http2) and the asyncio
client and server (wskit.asyncio.http2), over real TLS sockets on 127.0.0.1.

A misbehaving HTTP/2 peer (too many streams, invalid requests, a reset in the
middle of a message) is played by the ``h2`` package itself, driven by hand.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hypothesis import given
from hypothesis import strategies as st

from wskit import InvalidHandshake, NegotiationError, Request, Response
from wskit.asyncio import ClientConnection, ServerConnection, http2
from wskit.asyncio import connect as connect_h1
from wskit.asyncio import serve as serve_h1
from wskit.events import BinaryMessage, Close, TextMessage
from wskit.exceptions import ConnectionClosedError, InvalidState
from wskit.frames import Opcode
from wskit.headers import Headers
from wskit.http2 import H2ClientProtocol, H2ServerProtocol, error_response
from wskit.plugin import PluginManager
from wskit.statemachine import State

from helpers import client_frame

HOST = "127.0.0.1"


# -- sans-I/O: the extended CONNECT and its answer -----------------------------------------


# wskit's own plugins only: the tests below name the extensions they expect, whatever else is installed.
BUILTINS = PluginManager(entry_points=False)


def pair(**server_kwargs: Any) -> tuple[H2ClientProtocol, H2ServerProtocol]:
    return (H2ClientProtocol("wss://example.com/chat", subprotocols=["chat"], plugin_manager=BUILTINS),
            H2ServerProtocol(plugin_manager=BUILTINS, **server_kwargs))


def test_request_headers_are_an_extended_connect() -> None:
    client = H2ClientProtocol("wss://user:pw@example.com:8443/chat?room=1", subprotocols=["chat", "superchat"],
                              origin="https://example.com", extra_headers=[("X-Token", "t")], extensions=[])
    block = client.request_headers()
    assert block[:5] == [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                         (":path", "/chat?room=1"), (":authority", "example.com:8443")]
    regular = dict(block[5:])
    assert regular["sec-websocket-version"] == "13"
    assert regular["sec-websocket-protocol"] == "chat, superchat"
    assert regular["origin"] == "https://example.com"
    assert regular["authorization"] == "Basic dXNlcjpwdw=="
    assert regular["x-token"] == "t"  # names are lowercase in HTTP/2
    # No HTTP/1.1 upgrade machinery: no key, no Upgrade, no Connection, no Host.
    assert not {"sec-websocket-key", "upgrade", "connection", "host"} & set(regular)
    assert all(name == name.lower() for name, _ in block)
    assert H2ClientProtocol("ws://example.com/").request_headers()[2] == (":scheme", "http")


def test_request_headers_refuse_connection_specific_and_duplicate_headers() -> None:
    with pytest.raises(ValueError, match="'Connection' is not allowed over HTTP/2"):
        H2ClientProtocol("wss://example.com/", extra_headers=[("Connection", "keep-alive")]).request_headers()
    with pytest.raises(ValueError, match="conflicts with the 'Origin' header"):
        H2ClientProtocol("wss://example.com/", origin="https://a", extra_headers=[("Origin", "https://b")]
                         ).request_headers()


def test_client_api_misuse_is_an_invalid_state() -> None:
    client = H2ClientProtocol("wss://example.com/")
    with pytest.raises(InvalidState, match="request_headers"):
        client.connect()
    with pytest.raises(InvalidState, match="receive_response"):
        client.receive_data(b"\x81\x00")
    with pytest.raises(InvalidState, match="needs a sent, unanswered request"):
        client.receive_response([(":status", "200")])
    client.request_headers()
    with pytest.raises(InvalidState, match="only be called once"):
        client.request_headers()


def test_handshake_then_the_rfc_6455_data_path_with_compression() -> None:
    client, server = pair(subprotocols=["chat"])
    (request,) = server.receive_request(client.request_headers())
    assert isinstance(request, Request)
    assert (request.method, request.path) == ("CONNECT", "/chat")
    assert request.headers["Host"] == "example.com"  # from :authority, for code written for HTTP/1.1
    assert server.accept() == []
    block = server.response_headers()
    assert block[0] == (":status", "200")
    assert ("sec-websocket-protocol", "chat") in block
    assert any(name == "sec-websocket-extensions" for name, _ in block)
    (response,) = client.receive_response(block)
    assert isinstance(response, Response) and response.status_code == 200
    assert client.state is server.state is State.OPEN
    assert client.subprotocol == server.subprotocol == "chat"
    assert [e.name for e in client.extensions] == ["permessage-deflate"]
    # The client masks as over HTTP/1.1 (RFC 8441 keeps RFC 6455 framing); deflate compresses.
    (data,) = client.send_text("hello " * 1000)
    assert data[1] & 0x80 and len(data) < 200
    assert server.receive_data(data) == [TextMessage("hello " * 1000)]
    out = server.send_binary(b"\x00\xff")
    assert not out[0][1] & 0x80
    assert client.receive_data(b"".join(out)) == [BinaryMessage(b"\x00\xff")]
    assert server.receive_data(b"".join(client.send_close(1000, "bye"))) == [Close(1000, "bye")]


def test_data_before_the_answer_waits_and_is_bounded() -> None:
    client, server = pair()
    server.receive_request(client.request_headers())
    # What a client that does not wait for the 200 sends (masked frames) is kept...
    early = client_frame(Opcode.TEXT, b"early")
    assert server.receive_data(early) == []
    server.accept()
    assert server.receive_data(b"") == [TextMessage("early")]
    # ... but not without limit.
    client, server = pair(max_size=1000)
    server.receive_request(client.request_headers())
    with pytest.raises(InvalidHandshake, match="before the handshake was answered") as info:
        server.receive_data(client_frame(Opcode.BINARY, b"x" * 70_000))
    assert info.value.status == 400
    assert server.state is State.CLOSED


def block_with(**changes: str | None) -> list[tuple[str, str]]:
    base = {":method": "CONNECT", ":protocol": "websocket", ":scheme": "https", ":path": "/", ":authority": "h",
            "sec-websocket-version": "13"}
    base.update(changes)
    return [(name, value) for name, value in base.items() if value is not None]


@pytest.mark.parametrize(("block", "status", "message"), [
    (block_with(**{":method": "GET", ":protocol": None}), 405, "extended CONNECT"),
    (block_with(**{":protocol": None}), 400, "without :protocol"),
    (block_with(**{":protocol": "webtransport"}), 501, "'webtransport' is not supported"),
    (block_with(**{":path": None}), 400, "without :path"),
    (block_with(**{":authority": None}), 400, "without :authority"),
    (block_with(**{":scheme": "ftp"}), 400, "neither https nor http"),
    (block_with(**{"sec-websocket-version": "8"}), 426, "supports version 13"),
    (block_with(connection="upgrade"), 400, "connection-specific header 'connection'"),
    (block_with(**{"X-Upper": "1"}), 400, "uppercase"),
    ([*block_with(**{":path": None}), (":path", "/late")], 400, "after a regular header"),
    ([(":method", "CONNECT"), *block_with()], 400, "appears twice"),
])
def test_invalid_requests_get_their_status(block: list[tuple[str, str]], status: int, message: str) -> None:
    server = H2ServerProtocol()
    with pytest.raises(InvalidHandshake, match=message) as info:
        server.receive_request(block)
    assert info.value.status == status
    assert server.state is State.CLOSED


def test_version_header_may_be_absent_and_origins_are_checked() -> None:
    server = H2ServerProtocol()
    server.receive_request(block_with(**{"sec-websocket-version": None}))
    assert server.state is State.CONNECTING
    server = H2ServerProtocol(origins=["https://good"])
    with pytest.raises(InvalidHandshake, match="Origin 'https://evil' is not allowed") as info:
        server.receive_request(block_with(origin="https://evil"))
    assert info.value.status == 403
    H2ServerProtocol(origins=["https://good"]).receive_request(block_with(origin="https://good"))


def test_error_response_and_reject_leave_out_connection_specific_headers() -> None:
    block, body = error_response(426, "use version 13", [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")])
    assert block[0] == (":status", "426")
    assert ("sec-websocket-version", "13") in block
    assert not any(name == "upgrade" for name, _ in block)
    assert dict(block)["content-length"] == str(len(body)) and body == b"use version 13\n"
    client, server = pair()
    server.receive_request(client.request_headers())
    assert server.reject(403, "go away", [("Connection", "close"), ("X-Why", "policy")]) == []
    assert server.response_headers() == [(":status", "403"), ("x-why", "policy"),
                                         ("content-type", "text/plain; charset=utf-8"), ("content-length", "7")]
    assert server.response is not None and server.response.body == b"go away"
    assert server.state is State.CLOSED


def test_client_refuses_a_bad_answer() -> None:
    client = H2ClientProtocol("wss://example.com/")
    client.request_headers()
    with pytest.raises(InvalidHandshake, match="answered 403 Forbidden") as info:
        client.receive_response([(":status", "403"), ("content-type", "text/plain")])
    assert info.value.response is not None and info.value.response.status_code == 403
    assert client.state is State.CLOSED

    client = H2ClientProtocol("wss://example.com/", subprotocols=["chat"])
    client.request_headers()
    with pytest.raises(NegotiationError, match="'other', which was not offered"):
        client.receive_response([(":status", "200"), ("sec-websocket-protocol", "other")])

    client = H2ClientProtocol("wss://example.com/", extensions=[])
    client.request_headers()
    with pytest.raises(NegotiationError, match="does not match an offer"):
        client.receive_response([(b":status", b"200"), (b"sec-websocket-extensions", b"permessage-deflate")])


_tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)


@given(
    path=st.lists(_tokens, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    offered=st.lists(_tokens, max_size=4, unique=True),
    supported=st.lists(_tokens, max_size=4, unique=True),
    port=st.integers(1, 65535),
)
def test_any_request_built_is_accepted_and_the_choice_agrees(path: str, offered: list[str], supported: list[str],
                                                            port: int) -> None:
    client = H2ClientProtocol(f"wss://example.com:{port}{path}", subprotocols=offered)
    server = H2ServerProtocol(subprotocols=supported)
    (request,) = server.receive_request([(n.encode(), v.encode()) for n, v in client.request_headers()])
    assert isinstance(request, Request) and request.path == path
    server.accept()
    client.receive_response(server.response_headers())
    expected = next((name for name in supported if name in offered), None)
    assert client.subprotocol == server.subprotocol == expected
    assert [e.name for e in client.extensions] == [e.name for e in server.extensions]


def test_docs_sansio_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "http2.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "H2ServerProtocol(" in b)
    exec(compile(block, "docs/http2.md", "exec"), {})
    assert capsys.readouterr().out == "CONNECT /chat chat\n"


# -- asyncio: TLS certificate, servers, helpers ----------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl binary to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@pytest.fixture
def tls(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, Callable[[], ssl.SSLContext]]:
    """(a server context, a factory of client contexts trusting it)."""
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    return server_ctx, lambda: ssl.create_default_context(cafile=str(cert))


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


def port_of(server: Any) -> int:
    return int(server.sockets[0].getsockname()[1])


class RawH2:
    """An HTTP/2 client driven by hand with h2 (to play a peer that breaks the rules)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        # Sends what it is told, unchecked, unchanged (uppercase names included).
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
                                           normalize_outbound_headers=False)
        self.conn = h2.connection.H2Connection(config)
        self.events: list[Any] = []

    @classmethod
    async def open(cls, port: int, ctx: ssl.SSLContext) -> RawH2:
        ctx.set_alpn_protocols(["h2"])
        reader, writer = await asyncio.open_connection(HOST, port, ssl=ctx, server_hostname="localhost")
        raw = cls(reader, writer)
        raw.conn.initiate_connection()
        raw.flush()
        return raw

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    def request(self, path: str = "/", end: bool = False, **changes: str | None) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, block_with(**{":path": path, ":authority": f"{HOST}", **changes}),
                               end_stream=end)
        self.flush()
        return stream_id

    async def until(self, found: Callable[[Any], bool]) -> Any:
        """Read until an event matches; return it."""
        while True:
            for event in self.events:
                if found(event):
                    self.events.remove(event)
                    return event
            data = await self.reader.read(65536)
            assert data, f"connection closed; events so far: {self.events}"
            self.events.extend(self.conn.receive_data(data))
            self.flush()

    async def response(self, stream_id: int) -> dict[str, str]:
        event = await self.until(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id)
        return dict(event.headers)

    async def data(self, stream_id: int) -> bytes:
        event = await self.until(lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == stream_id)
        self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        self.flush()  # the WINDOW_UPDATE, if any
        return bytes(event.data)

    def send(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self.conn.send_data(stream_id, data, end_stream=end)
        self.flush()

    def close(self) -> None:
        self.writer.close()


# -- asyncio: echo, streams, HTTP/1.1 on the same port ---------------------------------------


def test_echo_over_http2(tls: Any) -> None:
    server_ctx, client_ctx = tls
    seen: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        seen.append(ws)
        await echo(ws)

    async def main() -> None:
        async with http2.serve(handler, HOST, 0, ssl=server_ctx, subprotocols=["chat"],
                               plugin_manager=BUILTINS) as server:
            uri = f"wss://{HOST}:{port_of(server)}/room?x=1"
            async with http2.connect(uri, ssl=client_ctx(), subprotocols=["chat"], plugin_manager=BUILTINS) as ws:
                assert isinstance(ws, http2.H2ClientConnection) and isinstance(ws, ClientConnection)
                assert ws.http_version == "2" and ws.stream_id == 1
                assert ws.transport is not None and ws.transport.get_extra_info("ssl_object") is not None
                assert ws.subprotocol == "chat" and [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
                assert ws.response is not None and ws.response.status_code == 200
                for message in ("hello", b"\x00\x01", "é" * 100_000, b"\xff" * 1_000_000):
                    await ws.send(message)
                    assert await ws.recv() == message
                (conn,) = seen
                assert isinstance(conn, http2.H2ServerConnection) and conn.http_version == "2"
                assert conn.request is not None and conn.request.method == "CONNECT"
                assert conn.request.path == "/room?x=1"
                assert conn in server.connections
            assert ws.close_code == 1000
            await conn.wait_closed()
            assert conn.close_code == 1000

    run(main())


def test_many_streams_share_one_connection_and_close_alone(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx) as server:
            uri = f"wss://{HOST}:{port_of(server)}/"
            ctx = client_ctx()
            sockets = await asyncio.gather(*(http2.connect(uri, ssl=ctx) for _ in range(10)))
            assert all(isinstance(ws, http2.H2ClientConnection) for ws in sockets)
            assert len({ws.stream_id for ws in sockets}) == 10
            assert len({ws.transport._carrier for ws in sockets}) == 1  # type: ignore[union-attr]
            assert len(server.connections) == 10
            await asyncio.gather(*(ws.send(f"m{i}") for i, ws in enumerate(sockets)))
            assert await asyncio.gather(*(ws.recv() for ws in sockets)) == [f"m{i}" for i in range(10)]
            # Closing some leaves the others open on the same HTTP/2 connection.
            for ws in sockets[:5]:
                await ws.close()
            assert [ws.close_code for ws in sockets[:5]] == [1000] * 5
            for ws in sockets[5:]:
                await ws.send("still")
                assert await ws.recv() == "still"
            later = await http2.connect(uri, ssl=ctx)
            assert later.transport._carrier is sockets[5].transport._carrier  # type: ignore[union-attr]
            await later.close()
            for ws in sockets[5:]:
                await ws.close()
            assert ws.transport is not None
            carrier = ws.transport._carrier  # type: ignore[attr-defined]
            await carrier.closed.wait()  # the last WebSocket closed: so did the HTTP/2 connection

    run(main())


def test_http11_and_http2_on_the_same_port(tls: Any) -> None:
    server_ctx, client_ctx = tls
    kinds: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        kinds.append(type(ws).__name__)
        await echo(ws)

    async def main() -> None:
        async with http2.serve(handler, HOST, 0, ssl=server_ctx) as server:
            uri = f"wss://{HOST}:{port_of(server)}/"
            async with connect_h1(uri, ssl=client_ctx()) as ws1, http2.connect(uri, ssl=client_ctx()) as ws2:
                assert type(ws1) is ClientConnection and isinstance(ws2, http2.H2ClientConnection)
                for ws in (ws1, ws2):
                    await ws.send("x")
                    assert await ws.recv() == "x"
        assert sorted(kinds) == ["H2ServerConnection", "ServerConnection"]

    run(main())


def test_falls_back_to_http11_when_the_server_does_not_offer_h2(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with serve_h1(echo, HOST, 0, ssl=server_ctx) as server:  # HTTP/1.1 only: no ALPN h2
            async with http2.connect(f"wss://{HOST}:{port_of(server)}/", ssl=client_ctx()) as ws:
                assert type(ws) is ClientConnection
                await ws.send("over 1.1")
                assert await ws.recv() == "over 1.1"

    run(main())


def test_a_bad_request_header_fails_that_connect_only(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx) as server:
            uri = f"wss://{HOST}:{port_of(server)}/"
            ctx = client_ctx()
            async with http2.connect(uri, ssl=ctx) as first:
                with pytest.raises(ValueError, match="'Connection' is not allowed over HTTP/2"):
                    await http2.connect(uri, ssl=ctx, extra_headers=[("Connection", "keep-alive")])
                async with http2.connect(uri, ssl=ctx, extra_headers=[("X-Ok", "1")]) as second:
                    assert second.transport._carrier is first.transport._carrier  # type: ignore[union-attr]
                    await second.send("fine")
                    assert await second.recv() == "fine"

    run(main())


class PlainH2(asyncio.Protocol):
    """An HTTP/2 server (h2) that does not offer RFC 8441: no SETTINGS_ENABLE_CONNECT_PROTOCOL."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]


def test_falls_back_to_http11_when_h2_has_no_extended_connect(tls: Any) -> None:
    server_ctx, client_ctx = tls
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    taken: list[PlainH2] = []

    class Acceptor:
        """Where wskit.asyncio.http2.serve hooks in: here, hand h2 connections to PlainH2."""

        def take_over(self, conn: ServerConnection, transport: asyncio.BaseTransport) -> bool:
            if transport.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
                return False
            plain = PlainH2()
            taken.append(plain)
            transport.set_protocol(plain)
            plain.connection_made(transport)
            return True

        def close(self) -> None:
            pass

    async def main() -> None:
        async with serve_h1(echo, HOST, 0, ssl=server_ctx) as server:
            server._http2 = Acceptor()
            ctx = client_ctx()
            async with http2.connect(f"wss://{HOST}:{port_of(server)}/", ssl=ctx) as ws:
                assert type(ws) is ClientConnection  # the second connection, HTTP/1.1 only
                assert ws.transport is not None
                assert ws.transport.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
                await ws.send("fallback")
                assert await ws.recv() == "fallback"
            assert len(taken) == 1  # the HTTP/2 attempt
            assert ctx.get_ca_certs()  # the caller's context, still usable
            async with http2.connect(f"wss://{HOST}:{port_of(server)}/", ssl=ctx) as again:
                assert type(again) is ClientConnection and len(taken) == 2  # h2 offered again, then fell back

    run(main())


def test_http2_needs_tls() -> None:
    with pytest.raises(ValueError, match="h2c"):
        http2.connect("ws://127.0.0.1:1/")

    async def main() -> None:
        with pytest.raises(ValueError, match="needs TLS"):
            http2.serve(echo, HOST, 0)

    run(main())


def test_process_request_answers_plain_http2_requests_and_refusals(tls: Any) -> None:
    server_ctx, client_ctx = tls

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        if request.method == "GET":  # a page, loaded over HTTP/2 as browsers do
            return Response(200, "OK", Headers([("Content-Type", "text/plain"), ("Connection", "close")]), b"page")
        if request.path == "/private":
            return conn.respond(403, "no")
        return None

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, process_request=process_request) as server:
            port = port_of(server)
            raw = await RawH2.open(port, client_ctx())
            page = raw.request("/", **{":method": "GET", ":protocol": None, "sec-websocket-version": None})
            assert (await raw.response(page))[":status"] == "200"
            assert await raw.data(page) == b"page"
            raw.close()
            with pytest.raises(InvalidHandshake, match="403") as info:
                await http2.connect(f"wss://{HOST}:{port}/private", ssl=client_ctx())
            assert info.value.response is not None and info.value.response.status_code == 403

    run(main())


# -- limits and bad input --------------------------------------------------------------------


def test_too_many_streams_are_refused_and_the_others_go_on(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, max_streams=2, compression=None) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            # Sent at once, before the server's SETTINGS could limit this client.
            first, second, third = raw.request(), raw.request(), raw.request()
            reset = await raw.until(lambda e: isinstance(e, h2.events.StreamReset))
            assert (reset.stream_id, reset.error_code) == (third, ErrorCodes.REFUSED_STREAM)
            assert raw.conn.remote_settings.max_concurrent_streams == 2
            assert raw.conn.remote_settings.enable_connect_protocol == 1
            for stream_id in (first, second):
                assert (await raw.response(stream_id))[":status"] == "200"
                raw.send(stream_id, client_frame(Opcode.TEXT, b"ok"))
                assert await raw.data(stream_id) == b"\x81\x02ok"
            raw.close()

    run(main())


def test_invalid_requests_get_an_error_response_on_their_stream_only(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, compression=None) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            good = raw.request()
            assert (await raw.response(good))[":status"] == "200"
            cases = {raw.request(**{"sec-websocket-version": "8"}): ("426", b"version 13"),
                     raw.request(**{":protocol": "chat"}): ("501", b"not supported"),
                     raw.request(**{"Bad-Name": "x"}): ("400", b"uppercase"),
                     raw.request(**{":method": "GET", ":protocol": None}): ("405", b"extended CONNECT"),
                     raw.request(end=True): ("400", b"END_STREAM")}
            for stream_id, (status, text) in cases.items():
                answer = await raw.response(stream_id)
                assert answer[":status"] == status
                assert text in await raw.data(stream_id)
            raw.send(good, client_frame(Opcode.TEXT, b"alive"))
            assert await raw.data(good) == b"\x81\x05alive"
            raw.close()

    run(main())


def test_a_stream_reset_mid_message_ends_that_websocket_only(tls: Any) -> None:
    server_ctx, client_ctx = tls
    ended: asyncio.Queue[BaseException] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        try:
            await echo(ws)
        except ConnectionClosedError as exc:
            await ended.put(exc)
            raise

    async def main() -> None:
        async with http2.serve(handler, HOST, 0, ssl=server_ctx, compression=None) as server:
            raw = await RawH2.open(port_of(server), client_ctx())
            victim, other = raw.request(), raw.request()
            for stream_id in (victim, other):
                assert (await raw.response(stream_id))[":status"] == "200"
            frame = client_frame(Opcode.BINARY, b"x" * 1000)
            raw.send(victim, frame[:500])  # half a frame
            raw.conn.reset_stream(victim, ErrorCodes.CANCEL)
            raw.flush()
            exc = await ended.get()
            assert isinstance(exc, ConnectionClosedError) and exc.code == 1006
            raw.send(other, frame)
            received = b""
            while len(received) < 1004:
                received += await raw.data(other)
            assert received == b"\x82\x7e\x03\xe8" + b"x" * 1000
            assert len(server.connections) == 1
            raw.close()

    run(main())


def test_flow_control_and_backpressure_per_stream(tls: Any) -> None:
    server_ctx, client_ctx = tls
    release = asyncio.Event()
    received: list[int] = []
    conns: list[http2.H2ServerConnection] = []

    async def slow(ws: ServerConnection) -> None:
        conns.append(ws)  # type: ignore[arg-type]
        if ws.request is not None and ws.request.path == "/slow":
            await release.wait()
            async for message in ws:
                received.append(len(message))
                if len(received) == 100:
                    await ws.send("done")
        else:
            await echo(ws)

    async def main() -> None:
        async with http2.serve(slow, HOST, 0, ssl=server_ctx, compression=None, max_queue=4,
                               stream_window=65535) as server:
            uri = f"wss://{HOST}:{port_of(server)}"
            ctx = client_ctx()
            blocked = await http2.connect(uri + "/slow", ssl=ctx, write_limit=65536, compression=None)

            async def flood() -> None:
                for _ in range(100):
                    await blocked.send(b"\x00" * 65536)  # 6.5 MB in all

            sender = asyncio.ensure_future(flood())
            # Another WebSocket on the same HTTP/2 connection is not held up.
            other = await http2.connect(uri + "/echo", ssl=ctx)
            assert other.transport._carrier is blocked.transport._carrier  # type: ignore[union-attr]
            for i in range(20):
                await other.send(f"ping {i}")
                assert await other.recv() == f"ping {i}"
            # 6.5 MB cannot have gone: the slow stream's window, its queue and the write limit hold much less.
            assert not sender.done()
            slow_conn = next(c for c in conns if c.request is not None and c.request.path == "/slow")
            stream = slow_conn.transport
            assert isinstance(stream, http2.StreamTransport)
            assert len(slow_conn._queue) <= 4
            assert sum(len(data) for data, _ in stream._held) <= 65535
            release.set()
            await sender
            assert await blocked.recv() == "done"
            assert received == [65536] * 100
            await other.close()
            await blocked.close()

    run(main())


def test_max_size_applies_per_stream(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, max_size=1000) as server:
            uri = f"wss://{HOST}:{port_of(server)}/"
            ctx = client_ctx()
            big, small = await http2.connect(uri, ssl=ctx), await http2.connect(uri, ssl=ctx)
            await big.send(b"x" * 2000)
            with pytest.raises(ConnectionClosedError) as info:
                await big.recv()
            assert info.value.code == 1009
            await small.send(b"y" * 1000)
            assert await small.recv() == b"y" * 1000
            await small.close()

    run(main())


def test_server_close_sends_1001_and_goaway(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        server = await http2.serve(echo, HOST, 0, ssl=server_ctx)
        uri = f"wss://{HOST}:{port_of(server)}/"
        ctx = client_ctx()
        sockets = [await http2.connect(uri, ssl=ctx) for _ in range(3)]
        carrier = sockets[0].transport._carrier  # type: ignore[union-attr]
        server.close()
        await server.wait_closed()
        for ws in sockets:
            await ws.wait_closed()
            assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")
        await carrier.closed.wait()

    run(main())


def test_server_close_ends_idle_http2_connections_and_pings_work(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        server = await http2.serve(echo, HOST, 0, ssl=server_ctx)
        idle = await RawH2.open(port_of(server), client_ctx())  # an HTTP/2 connection without any stream
        await idle.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        ws = await http2.connect(f"wss://{HOST}:{port_of(server)}/", ssl=client_ctx())
        latency = await (await ws.ping())
        assert latency >= 0 and ws.latency == latency
        server.close()
        await server.wait_closed()  # returns: the idle connection did not hold it
        await idle.until(lambda e: isinstance(e, h2.events.ConnectionTerminated))
        assert await idle.reader.read() == b""
        await ws.wait_closed()
        assert ws.close_code == 1001

    run(main())


def test_refused_handshake_raises_with_the_response(tls: Any) -> None:
    server_ctx, client_ctx = tls

    async def main() -> None:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, origins=["https://good"]) as server:
            uri = f"wss://{HOST}:{port_of(server)}/"
            with pytest.raises(InvalidHandshake, match="403") as info:
                await http2.connect(uri, ssl=client_ctx(), origin="https://evil")
            assert info.value.response is not None and info.value.response.status_code == 403
            async with http2.connect(uri, ssl=client_ctx(), origin="https://good") as ws:
                await ws.send("in")
                assert await ws.recv() == "in"

    run(main())


def test_on_message_callbacks_over_http2_streams(tls: Any) -> None:
    """An HTTP/2 stream is a connection like any other: on_message and send_nowait work on both ends."""
    server_ctx, client_ctx = tls

    async def callback_echo(ws: Any) -> None:
        ws.on_message = ws.send_nowait
        await ws.wait_closed()

    async def main() -> None:
        async with http2.serve(callback_echo, HOST, 0, ssl=server_ctx) as server:
            async with http2.connect(f"wss://{HOST}:{port_of(server)}/", ssl=client_ctx()) as ws:
                assert isinstance(ws, http2.H2ClientConnection)
                got: list[Any] = []
                done = asyncio.get_running_loop().create_future()

                def collect(message: Any) -> None:
                    got.append(message)
                    if len(got) == 50:
                        done.set_result(None)

                ws.on_message = collect
                for i in range(49):
                    ws.send_nowait(f"m{i}")
                ws.send_nowait(b"x" * 200_000)  # larger than the stream's flow-control window
                await done
                assert got == [f"m{i}" for i in range(49)] + [b"x" * 200_000]
            assert ws.close_code == 1000

    run(main())
