"""The sans-I/O RFC 8441 handshake (wskit.http2) driven through real HTTP/2 connections in memory.

Two ``h2`` connections, a client and a server, are joined by hand: the header
blocks :class:`H2ClientProtocol` and :class:`H2ServerProtocol` build go out as
HPACK-encoded HEADERS frames, and what they are given is what ``h2`` decoded
from those bytes. The peers may be told to send what breaks the rules (no
outbound validation), as a hostile peer would.
"""

from __future__ import annotations

import logging
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from wskit import InvalidHandshake, NegotiationError, Request, Response, hookimpl
from wskit.events import TextMessage
from wskit.exceptions import InvalidState, PluginError
from wskit.extensions.base import ServerExtensionFactory
from wskit.frames import Opcode
from wskit.headers import Headers
from wskit.http2 import H2ClientProtocol, H2ServerProtocol, error_response
from wskit.plugin import PluginManager
from wskit.statemachine import State

from helpers import client_frame

Block = list[tuple[str, str]]


def bare(*plugins: object) -> PluginManager:
    return PluginManager(plugins, builtins=False, entry_points=False)


def boom(hook: str) -> PluginManager:
    pm = bare()
    pm.register(Boom(hook), name="boom")
    return pm


class Wire:
    """An h2 client and an h2 server joined in memory: bytes one sends, the other receives."""

    def __init__(self) -> None:
        # Neither side checks or changes what it sends or receives: the tests play hostile peers too.
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False))
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.server.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        self.to_server()
        self.to_client()
        self.to_server()
        assert self.client.remote_settings.enable_connect_protocol == 1

    def to_server(self) -> list[Any]:
        return list(self.server.receive_data(self.client.data_to_send()))

    def to_client(self) -> list[Any]:
        return list(self.client.receive_data(self.server.data_to_send()))

    def request(self, block: Block, end: bool = False) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Send ``block`` as a new stream's HEADERS; return the stream and the block the server decoded."""
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(stream_id, block, end_stream=end)
        (event, *_) = self.to_server()
        assert isinstance(event, h2.events.RequestReceived) and event.stream_id == stream_id
        return stream_id, list(event.headers)

    def respond(self, stream_id: int, block: Block, body: bytes | None = None) -> list[tuple[bytes, bytes]]:
        """Send ``block`` (and ``body`` with END_STREAM) on the stream; return the block the client decoded."""
        self.server.send_headers(stream_id, block, end_stream=body == b"")
        if body:
            self.server.send_data(stream_id, body, end_stream=True)
        events = self.to_client()
        assert isinstance(events[0], h2.events.ResponseReceived) and events[0].stream_id == stream_id
        self.body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
        return list(events[0].headers)

    def data(self, stream_id: int, payload: bytes) -> bytes:
        """DATA from the client to the server on the stream: the payload the server received."""
        self.client.send_data(stream_id, payload)
        (event,) = self.to_server()
        assert isinstance(event, h2.events.DataReceived)
        return bytes(event.data)


def open_pair(client: H2ClientProtocol, server: H2ServerProtocol, wire: Wire) -> int:
    stream_id, received = wire.request(client.request_headers())
    server.receive_request(received)
    server.accept()
    client.receive_response(wire.respond(stream_id, server.response_headers()))
    assert client.state is server.state is State.OPEN
    return stream_id


REQUEST = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":path", "/"),
           (":authority", "example.com"), ("sec-websocket-version", "13")]


# -- a server refusing a bad extended CONNECT, and the client reading the refusal ----------------------------


@pytest.mark.parametrize(("block", "message"), [
    ([*REQUEST[:3], (":path", "chat"), *REQUEST[4:]], ":path 'chat' does not start with '/'"),
    ([*REQUEST[:5], (":status", "200"), REQUEST[5]], "unknown pseudo-header :status"),
    ([*REQUEST, ("x-note", "line\r\nbreak")], "invalid header"),
    ([*REQUEST, ("te", "gzip")], "connection-specific header 'te'"),
])
def test_a_malformed_request_is_refused_with_400_which_the_client_reads(block: Block, message: str) -> None:
    wire = Wire()
    stream_id, received = wire.request(block)
    server = H2ServerProtocol(plugin_manager=bare())
    with pytest.raises(InvalidHandshake, match=message) as info:
        server.receive_request(received)
    exc = info.value
    assert exc.status == 400 and exc.to_send == [] and server.state is State.CLOSED
    # What the server sends back: the status, the reason as the body.
    answer, body = error_response(exc.status, str(exc), exc.headers)
    client = H2ClientProtocol("wss://example.com/", plugin_manager=bare())
    client.request_headers()
    with pytest.raises(InvalidHandshake, match="answered 400 Bad Request") as refused:
        client.receive_response(wire.respond(stream_id, answer, body))
    assert refused.value.response is not None and refused.value.response.status_code == 400
    assert client.state is State.CLOSED
    assert message.split("'")[0].encode() in wire.body


def test_a_te_trailers_header_is_allowed() -> None:
    wire = Wire()
    _, received = wire.request([*REQUEST, ("te", "trailers")])
    (request,) = H2ServerProtocol(plugin_manager=bare()).receive_request(received)
    assert isinstance(request, Request) and request.headers["TE"] == "trailers"


def test_api_misuse_on_the_server_is_an_invalid_state() -> None:
    wire = Wire()
    server = H2ServerProtocol(plugin_manager=bare())
    with pytest.raises(InvalidState, match="DATA before the request's HEADERS"):
        server.receive_data(client_frame(Opcode.TEXT, b"too early"))
    with pytest.raises(InvalidState, match="needs a received, unanswered request"):
        server.accept()
    with pytest.raises(InvalidState, match="needs accept\\(\\) or reject\\(\\) first"):
        server.response_headers()
    client = H2ClientProtocol("wss://example.com/", plugin_manager=bare())
    stream_id = open_pair(client, server, wire)
    with pytest.raises(InvalidState, match="can only be called once"):
        server.receive_request(REQUEST)
    with pytest.raises(InvalidState, match="only possible during the opening handshake"):
        server.reject(403)
    # The connection is still fine: a message goes through the stream's DATA.
    assert server.receive_data(wire.data(stream_id, b"".join(client.send_text("still open")))) == [
        TextMessage("still open")]


def test_accept_sends_the_server_header_it_is_given() -> None:
    wire = Wire()
    client = H2ClientProtocol("wss://example.com/", plugin_manager=bare())
    server = H2ServerProtocol(plugin_manager=bare())
    stream_id, received = wire.request(client.request_headers())
    server.receive_request(received)
    with pytest.raises(ValueError, match="Server"):
        server.accept(server_header="bad\r\nvalue")
    assert server.state is State.CONNECTING  # a mistake of the caller: it may answer again
    server.accept(server_header="wskit-test/1")
    assert server.response_headers() == [(":status", "200"), ("server", "wskit-test/1")]
    (response,) = client.receive_response(wire.respond(stream_id, server.response_headers()))
    assert isinstance(response, Response) and response.headers["Server"] == "wskit-test/1"


def test_without_user_agent_the_request_has_none() -> None:
    default = dict(H2ClientProtocol("wss://example.com/", plugin_manager=bare()).request_headers())
    assert default["user-agent"].startswith("wskit")
    block = H2ClientProtocol("wss://example.com/", user_agent=None, plugin_manager=bare()).request_headers()
    assert "user-agent" not in dict(block)


# -- the client refusing a bad answer --------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "error", "message"), [
    ([(":status", "20")], InvalidHandshake, "invalid :status '20'"),
    ([("server", "x")], InvalidHandshake, "invalid :status ''"),
    ([(":status", "200"), ("Server", "x")], InvalidHandshake, "uppercase"),
    ([(":status", "200"), ("server", "x"), (":late", "1")], InvalidHandshake, "after a regular header"),
    ([(":status", "200"), ("x-note", "a\nb")], InvalidHandshake, "invalid header"),
    ([(":status", "200"), ("sec-websocket-protocol", "chat, superchat")], NegotiationError,
     "several subprotocols: 'chat, superchat'"),
])
def test_a_malformed_answer_fails_the_client(answer: Block, error: type[Exception], message: str) -> None:
    wire = Wire()
    client = H2ClientProtocol("wss://example.com/", subprotocols=["chat", "superchat"], plugin_manager=bare())
    stream_id, _ = wire.request(client.request_headers())
    with pytest.raises(error, match=message):
        client.receive_response(wire.respond(stream_id, answer))
    assert client.state is State.CLOSED
    with pytest.raises(InvalidState, match="needs a sent, unanswered request"):
        client.receive_response([(":status", "200")])


def test_another_2xx_also_accepts() -> None:
    wire = Wire()
    client = H2ClientProtocol("wss://example.com/", plugin_manager=bare())
    stream_id, _ = wire.request(client.request_headers())
    (response,) = client.receive_response(wire.respond(stream_id, [(":status", "204")]))
    assert isinstance(response, Response) and response.status_code == 204 and client.state is State.OPEN


# -- plugins and extension factories --------------------------------------------------------------------


class HeaderPlugin:
    @hookimpl
    def wskit_handshake_request(self, headers: Headers) -> None:
        headers["X-Plugin"] = "client"

    @hookimpl
    def wskit_handshake_response(self, request: Request, headers: Headers) -> None:
        headers["X-Plugin"] = "server saw " + (request.headers.get("X-Plugin") or "nothing")


def test_handshake_plugins_add_headers_in_lowercase() -> None:
    wire = Wire()
    client = H2ClientProtocol("wss://example.com/", plugin_manager=bare(HeaderPlugin()))
    server = H2ServerProtocol(plugin_manager=bare(HeaderPlugin()))
    block = client.request_headers()
    assert ("x-plugin", "client") in block  # HTTP/2 names are lowercase, whatever the plugin wrote
    stream_id, received = wire.request(block)
    (request,) = server.receive_request(received)
    assert isinstance(request, Request) and request.headers["X-Plugin"] == "client"
    server.accept()
    answer = server.response_headers()
    assert ("x-plugin", "server saw client") in answer
    (response,) = client.receive_response(wire.respond(stream_id, answer))
    assert isinstance(response, Response) and response.headers["X-Plugin"] == "server saw client"


class Veto:
    @hookimpl
    def wskit_check_request(self, request: Request) -> Response | None:
        if request.path.startswith("/private"):
            return Response(403, "Forbidden", Headers([("X-Why", "private")]), b"not here")
        return None


def test_check_request_veto_is_the_answer() -> None:
    wire = Wire()
    server = H2ServerProtocol(plugin_manager=bare(Veto()))
    _, received = wire.request([*REQUEST[:3], (":path", "/private/room"), *REQUEST[4:]])
    with pytest.raises(InvalidHandshake, match="refused by a plugin with 403 Forbidden") as info:
        server.receive_request(received)
    assert info.value.status == 403 and info.value.response is not None
    assert info.value.response.body == b"not here" and info.value.to_send == []
    assert server.state is State.CLOSED
    _, received = wire.request(REQUEST)
    assert H2ServerProtocol(plugin_manager=bare(Veto())).receive_request(received)


class Boom:
    def __init__(self, hook: str) -> None:
        self.hook = hook

    @hookimpl
    def wskit_check_request(self, request: Request) -> None:
        if self.hook == "wskit_check_request":
            raise ValueError("kaboom in check_request")

    @hookimpl
    def wskit_handshake_response(self, headers: Headers) -> None:
        if self.hook == "wskit_handshake_response":
            raise ValueError("kaboom in handshake_response")

    @hookimpl
    def wskit_handshake_request(self, headers: Headers) -> None:
        if self.hook == "wskit_handshake_request":
            raise ValueError("kaboom in handshake_request")


@pytest.mark.parametrize("hook", ["wskit_check_request", "wskit_handshake_response"])
def test_a_server_plugin_raising_answers_500_naming_it(hook: str) -> None:
    wire = Wire()
    server = H2ServerProtocol(plugin_manager=boom(hook))
    stream_id, received = wire.request(REQUEST)
    with pytest.raises(InvalidHandshake, match=f"plugin 'boom' raised ValueError in {hook}") as info:
        server.receive_request(received)
        server.accept()
    exc = info.value
    assert exc.status == 500 and exc.to_send == [] and isinstance(exc.__cause__, PluginError)
    assert server.state is State.CLOSED
    answer, body = error_response(500, "internal server error")
    client = H2ClientProtocol("wss://example.com/", plugin_manager=bare())
    client.request_headers()
    with pytest.raises(InvalidHandshake, match="answered 500 Internal Server Error"):
        client.receive_response(wire.respond(stream_id, answer, body))
    assert b"kaboom" not in wire.body  # the plugin's message stays on the server


def test_a_client_plugin_raising_names_it() -> None:
    client = H2ClientProtocol("wss://example.com/", plugin_manager=boom("wskit_handshake_request"))
    with pytest.raises(PluginError, match="plugin 'boom' raised ValueError in wskit_handshake_request"):
        client.request_headers()


class BrokenFactory(ServerExtensionFactory):
    name = "x-broken"

    def process_request_params(self, params: Any, accepted_extensions: Any) -> Any:
        raise RuntimeError("factory bug")


def test_an_extension_factory_raising_answers_500() -> None:
    wire = Wire()
    server = H2ServerProtocol(extensions=[BrokenFactory()], plugin_manager=bare())
    _, received = wire.request([*REQUEST, ("sec-websocket-extensions", "x-broken")])
    server.receive_request(received)
    with pytest.raises(InvalidHandshake, match="extension factory 'x-broken'") as info:
        server.accept()
    assert info.value.status == 500 and info.value.to_send == []
    assert server.state is State.CLOSED


# -- debug logging ---------------------------------------------------------------------------------------


def test_debug_log_tells_the_handshake_went_over_http2(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.http2.sansio")
    logger.setLevel(logging.DEBUG)
    wire = Wire()
    with caplog.at_level(logging.DEBUG, logger="test.http2.sansio"):
        client = H2ClientProtocol("wss://example.com/chat", logger=logger, plugin_manager=bare())
        server = H2ServerProtocol(logger=logger, plugin_manager=bare())
        open_pair(client, server, wire)
    messages = [r.getMessage() for r in caplog.records if r.name == "test.http2.sansio"]
    assert messages == ["> CONNECT /chat (:protocol websocket, HTTP/2)",
                        "< CONNECT /chat (:protocol websocket, HTTP/2)",
                        "> :status 200 (HTTP/2)", "< :status 200 (HTTP/2)"]
