"""Tests for the sans-I/O opening handshake at its edges (ClientProtocol, ServerProtocol): calls in
the wrong state, subprotocols that were not offered, extension factories that do not implement
their side, offers that do not parse, and the debug log of a failed handshake."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_statemachine import config_error, spec_data

from wskit import ClientProtocol, ServerProtocol, State, TextMessage
from wskit.events import Request, Response
from wskit.exceptions import InvalidHandshake, InvalidState, InvalidURI, NegotiationError, ProtocolError
from wskit.extensions.base import ClientExtensionFactory, Extension, ExtensionParameter, ServerExtensionFactory
from wskit.handshake import accept_key, parse_uri
from wskit.headers import parse_extension_header


def request_for(server: ServerProtocol, client: ClientProtocol) -> Request:
    [request] = server.receive_data(b"".join(client.connect()))
    assert isinstance(request, Request)
    return request


def open_pair(client: ClientProtocol, server: ServerProtocol) -> Response:
    request_for(server, client)
    [response] = client.receive_data(b"".join(server.accept()))
    assert isinstance(response, Response)
    return response


# -- ServerProtocol ------------------------------------------------------------------------------


def test_accept_before_a_request_is_refused() -> None:
    with pytest.raises(InvalidState, match=r"accept\(\) needs a received, unanswered request \(state CONNECTING\)"):
        ServerProtocol().accept()


def test_accept_twice_is_refused() -> None:
    server = ServerProtocol()
    open_pair(ClientProtocol(), server)
    with pytest.raises(InvalidState, match=r"accept\(\) needs a received, unanswered request \(state OPEN\)"):
        server.accept()


def test_reject_after_accept_is_refused() -> None:
    server = ServerProtocol()
    open_pair(ClientProtocol(), server)
    with pytest.raises(InvalidState, match=r"reject\(\) is only possible during the opening handshake \(state OPEN\)"):
        server.reject(403)
    assert server.state is State.OPEN


def test_empty_read_between_request_and_accept_changes_nothing() -> None:
    client, server = ClientProtocol(), ServerProtocol()
    request_for(server, client)
    assert server.receive_data(b"") == []
    assert server.state is State.CONNECTING
    [response] = client.receive_data(b"".join(server.accept()))
    assert isinstance(response, Response) and response.status_code == 101


def test_accept_with_a_subprotocol_the_client_did_not_offer_is_refused() -> None:
    server = ServerProtocol()
    request_for(server, ClientProtocol(subprotocols=["chat"]))
    with pytest.raises(ValueError, match=r"subprotocol 'mqtt' was not offered by the client \(offered: \['chat'\]\)"):
        server.accept(subprotocol="mqtt")
    assert server.state is State.CONNECTING
    client = ClientProtocol(subprotocols=["chat"])
    server = ServerProtocol()
    request_for(server, client)
    [response] = client.receive_data(b"".join(server.accept(subprotocol="chat")))
    assert isinstance(response, Response) and response.headers["Sec-WebSocket-Protocol"] == "chat"
    assert client.subprotocol == "chat"


def test_select_subprotocol_returning_one_not_offered_is_refused() -> None:
    def select(protocol: ServerProtocol, offered: Sequence[str]) -> str | None:
        return "superchat"

    server = ServerProtocol(select_subprotocol=select)
    request_for(server, ClientProtocol(subprotocols=["chat"]))
    with pytest.raises(ValueError, match="select_subprotocol returned 'superchat', which the client did not offer"):
        server.accept()


class _Marker(Extension):
    name = "x-marker"


class _ServerMarker(ServerExtensionFactory):
    name = "x-marker"

    def process_request_params(self, params: Sequence[ExtensionParameter],
                               accepted_extensions: Sequence[Extension]) -> tuple[list[ExtensionParameter], Extension]:
        return list(params), _Marker()


class _ClientMarker(ClientExtensionFactory):
    name = "x-marker"

    def process_response_params(self, params: Sequence[ExtensionParameter],
                                accepted_extensions: Sequence[Extension]) -> Extension:
        return _Marker()


def test_an_offer_that_does_not_parse_is_ignored() -> None:
    server = ServerProtocol(extensions=[_ServerMarker()])
    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Extensions: x-marker; =broken\r\n\r\n")
    server.receive_data(request)
    [data] = server.accept()
    assert data.startswith(b"HTTP/1.1 101 ")
    assert b"sec-websocket-extensions" not in data.lower()
    assert server.extensions == []


def test_server_factory_without_process_request_params_answers_500() -> None:
    class OfferOnly(ServerExtensionFactory):
        name = "x-marker"

    server = ServerProtocol(extensions=[OfferOnly()])
    request_for(server, ClientProtocol(extensions=[_ClientMarker()]))
    with pytest.raises(InvalidHandshake) as info:
        server.accept()
    assert info.value.status == 500
    assert "extension factory 'x-marker' (" in str(info.value) and "raised NotImplementedError" in str(info.value)
    assert info.value.to_send[0].startswith(b"HTTP/1.1 500 ")
    assert server.state is State.CLOSED


def test_server_logs_a_failed_handshake_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.handshake.server")
    logger.setLevel(logging.DEBUG)
    server = ServerProtocol(logger=logger)
    with caplog.at_level(logging.DEBUG, logger="test.handshake.server"), pytest.raises(InvalidHandshake):
        server.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert any(r.getMessage().startswith("! opening handshake failed: ") for r in caplog.records)


# -- ClientProtocol ------------------------------------------------------------------------------


def test_client_factory_without_process_response_params_fails_the_handshake() -> None:
    class OfferOnly(ClientExtensionFactory):
        name = "x-marker"

    client = ClientProtocol(extensions=[OfferOnly()])
    server = ServerProtocol(extensions=[_ServerMarker()])
    request_for(server, client)
    with pytest.raises(NegotiationError, match=r"extension factory 'x-marker' \(.*OfferOnly\) raised "
                                               "NotImplementedError"):
        client.receive_data(b"".join(server.accept()))
    assert client.state is State.CLOSED


def test_client_matches_the_accepted_extension_among_several_offers() -> None:
    class Other(ClientExtensionFactory):
        name = "x-other"

    client = ClientProtocol(extensions=[Other(), _ClientMarker()])
    server = ServerProtocol(extensions=[_ServerMarker()])
    open_pair(client, server)
    assert [ext.name for ext in client.extensions] == ["x-marker"]
    assert repr(client.extensions[0]) == "<_Marker x-marker>"


def test_client_logs_a_failed_handshake_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.handshake.client")
    logger.setLevel(logging.DEBUG)
    client = ClientProtocol(logger=logger)
    client.connect()
    with caplog.at_level(logging.DEBUG, logger="test.handshake.client"), pytest.raises(InvalidHandshake):
        client.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert any(r.getMessage().startswith("! opening handshake failed: ") for r in caplog.records)


def test_spec_with_a_handshake_that_cannot_fail_is_refused(tmp_path: Path) -> None:
    data = spec_data()
    data["transitions"] = [t for t in data["transitions"] if t["trigger"] != "handshake_failed"]
    data["states"].pop("rejected")
    data["states"].pop("rejected_closed")
    data["transitions"] = [t for t in data["transitions"] if t["source"] != "rejected"]
    message = config_error(tmp_path, data)
    assert "states.connecting.allow: handshake is allowed, so both an accept and a handshake_failed" in message


# -- values the application passes ---------------------------------------------------------------


def test_a_header_value_that_is_not_a_str_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="header value for 'Origin' must be str, got bytes"):
        ClientProtocol(origin=b"https://127.0.0.1").connect()  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="header value for 'User-Agent' must be str, got int"):
        ClientProtocol(user_agent=7).connect()  # type: ignore[arg-type]
    server = ServerProtocol()
    request_for(server, ClientProtocol())
    with pytest.raises(TypeError, match="header value for 'Server' must be str, got bytes"):
        server.accept(server_header=b"mine")  # type: ignore[arg-type]


def test_uri_must_be_a_str() -> None:
    with pytest.raises(InvalidURI, match="WebSocket URI must be a str, got bytes"):
        parse_uri(b"ws://127.0.0.1/")  # type: ignore[arg-type]


def test_international_host_names_are_idna_encoded_or_refused() -> None:
    assert parse_uri("ws://bücher.example/").host == "xn--bcher-kva.example"
    label = "ü" * 64  # longer than a DNS label may be
    with pytest.raises(InvalidURI, match="invalid international host name"):
        parse_uri(f"ws://{label}.example/")


def test_an_allowed_origin_is_accepted() -> None:
    server = ServerProtocol(origins=["https://127.0.0.1"])
    response = open_pair(ClientProtocol(origin="https://127.0.0.1"), server)
    assert response.status_code == 101
    server = ServerProtocol(origins=["https://127.0.0.1"])
    with pytest.raises(InvalidHandshake, match=r"Origin 'https://evil\.example' is not allowed") as info:
        request_for(server, ClientProtocol(origin="https://evil.example"))
    assert info.value.status == 403


def test_the_extension_header_cache_stays_bounded() -> None:
    from wskit import headers

    for i in range(300):
        value = f"x-ext{i}; level={i}"
        assert parse_extension_header([value]) == [(f"x-ext{i}", [("level", str(i))])]
    assert len(headers._EXTENSION_CACHE) <= 256


def test_a_browser_request_with_keep_alive_and_an_allowed_origin_is_accepted() -> None:
    # Firefox sends "Connection: keep-alive, Upgrade": the request is checked step by step.
    request = (b"GET /chat HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
               b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\nOrigin: https://127.0.0.1\r\n\r\n")
    server = ServerProtocol(origins=["https://127.0.0.1"])
    server.receive_data(request)
    [data] = server.accept()
    assert data.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in data
    refused = ServerProtocol(origins=["https://other.example"])
    with pytest.raises(InvalidHandshake, match=r"Origin 'https://127\.0\.0\.1' is not allowed") as info:
        refused.receive_data(request)
    assert info.value.status == 403


class _ModeFactory(ClientExtensionFactory):
    """Offers x-marker with one mode and accepts only an answer in that mode."""

    name = "x-marker"

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def get_request_params(self) -> list[ExtensionParameter]:
        return [("mode", self.mode)]

    def process_response_params(self, params: Sequence[ExtensionParameter],
                                accepted_extensions: Sequence[Extension]) -> Extension:
        if list(params) != [("mode", self.mode)]:
            raise NegotiationError(f"expected mode {self.mode}")
        return _Marker()


class _ServerMode(ServerExtensionFactory):
    name = "x-marker"

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def process_request_params(self, params: Sequence[ExtensionParameter],
                               accepted_extensions: Sequence[Extension]) -> tuple[list[ExtensionParameter], Extension]:
        if list(params) != [("mode", self.mode)]:
            raise NegotiationError("another mode")
        return list(params), _Marker()


def test_the_offer_that_fits_the_servers_answer_is_the_one_used() -> None:
    fast, small = _ModeFactory("fast"), _ModeFactory("small")
    client = ClientProtocol(extensions=[fast, small])
    server = ServerProtocol(extensions=[_ServerMode("small")])
    response = open_pair(client, server)
    assert response.headers["Sec-WebSocket-Extensions"] == "x-marker; mode=small"
    assert [ext.name for ext in client.extensions] == ["x-marker"]


def test_an_answer_no_offer_accepts_fails_the_handshake() -> None:
    client = ClientProtocol(extensions=[_ModeFactory("fast")])
    client.connect()
    request = client.request
    assert request is not None
    response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(request["Sec-WebSocket-Key"]).encode() + b"\r\n"
                b"Sec-WebSocket-Extensions: x-marker; mode=small\r\n\r\n")
    with pytest.raises(NegotiationError, match=r"the server accepted 'x-marker' with parameters "
                       r"\[\('mode', 'small'\)\], which does not match an offer \(offered: x-marker\)"):
        client.receive_data(response)
    assert client.state is State.CLOSED


# -- frames around the handshake -----------------------------------------------------------------


def test_frames_sent_with_the_request_are_read_after_accept() -> None:
    client, server = ClientProtocol(), ServerProtocol()
    wire = b"".join(client.connect())
    client.receive_data(b"".join(_answer_for(wire)))
    frames = b"".join(client.send_text("early"))
    [request] = server.receive_data(wire + frames)
    assert isinstance(request, Request)
    server.accept()
    assert server.receive_data(b"") == [TextMessage("early")]


def _answer_for(request_bytes: bytes) -> list[bytes]:
    server = ServerProtocol()
    server.receive_data(request_bytes)
    return server.accept()


def test_too_many_frames_before_the_answer_are_refused_with_400() -> None:
    client, server = ClientProtocol(), ServerProtocol(max_size=1000)
    request_for(server, client)
    assert server.receive_data(b"x" * 60000) == []
    with pytest.raises(InvalidHandshake, match=r"client sent 67000 bytes of frames before the handshake was answered "
                                               r"\(at most 66536\)") as info:
        server.receive_data(b"x" * 7000)
    assert info.value.status == 400
    assert info.value.to_send[0].startswith(b"HTTP/1.1 400 ")
    assert server.state is State.CLOSED


def test_invalid_frames_right_after_the_101_come_with_the_response() -> None:
    client, server = ClientProtocol(), ServerProtocol()
    request_for(server, client)
    answer = b"".join(server.accept())
    with pytest.raises(ProtocolError) as info:
        client.receive_data(answer + b"\x83\x00")  # reserved opcode 3
    assert info.value.close_code == 1002
    [response] = info.value.events
    assert isinstance(response, Response) and response.status_code == 101
    assert client.state is State.CLOSING


def test_a_server_answer_with_an_extension_never_offered_fails_the_handshake() -> None:
    client = ClientProtocol(extensions=[])
    client.connect()
    request = client.request
    assert request is not None
    response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept_key(request["Sec-WebSocket-Key"]).encode() + b"\r\n"
                b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    with pytest.raises(NegotiationError, match=r"which does not match an offer \(offered: none\)"):
        client.receive_data(response)


def test_custom_user_agent_and_server_headers_are_sent() -> None:
    client = ClientProtocol(user_agent="probe/1.0")
    server = ServerProtocol()
    request_for(server, client)
    assert server.request is not None and server.request.headers["User-Agent"] == "probe/1.0"
    [data] = server.accept(server_header="edge/2.0")
    assert b"\r\nServer: edge/2.0\r\n" in data
    client.receive_data(data)
    assert client.state is State.OPEN


def test_select_subprotocol_may_choose_an_offered_one_or_none() -> None:
    def select(protocol: ServerProtocol, offered: Sequence[str]) -> str | None:
        return offered[-1] if "chat" in offered else None

    for offered, chosen in ((["superchat", "chat"], "chat"), (["mqtt"], None)):
        client, server = ClientProtocol(subprotocols=offered), ServerProtocol(select_subprotocol=select)
        open_pair(client, server)
        assert client.subprotocol == server.subprotocol == chosen


def test_server_logs_the_accepted_handshake_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.handshake.accept")
    logger.setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG, logger="test.handshake.accept"):
        open_pair(ClientProtocol(), ServerProtocol(logger=logger))
    assert [r.getMessage() for r in caplog.records][-1] == "> HTTP/1.1 101 Switching Protocols"


def test_reject_with_a_body_says_it_is_text() -> None:
    server = ServerProtocol()
    request_for(server, ClientProtocol())
    [data] = server.reject(403, "members only")
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n") and body == b"members only"
    assert b"\r\nContent-Type: text/plain; charset=utf-8" in head and b"\r\nConnection: close" in head
    server = ServerProtocol()
    request_for(server, ClientProtocol())
    [data] = server.reject(404, b"{}", headers=[("Content-Type", "application/json")])
    assert b"Content-Type: application/json" in data and b"text/plain" not in data


def test_connect_is_called_once_and_before_receive_data() -> None:
    client = ClientProtocol()
    with pytest.raises(InvalidState, match=r"call connect\(\) and send the request before receive_data\(\)"):
        client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    client.connect()
    with pytest.raises(InvalidState, match=r"connect\(\) can only be called once, in state CONNECTING"):
        client.connect()


def test_a_long_extension_header_is_parsed_each_time() -> None:
    value = "x-long; " + "; ".join(f"p{i}={i}" for i in range(60))
    assert len(value) > 256
    parsed = parse_extension_header([value])
    assert parsed[0][0] == "x-long" and parsed[0][1][-1] == ("p59", "59")
    assert parse_extension_header([value]) == parsed
