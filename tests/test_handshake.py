"""Tests for wskit.handshake: building and checking the opening handshake (RFC 6455 §4)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit.defaults import USER_AGENT
from wskit.events import Request, Response
from wskit.exceptions import InvalidHandshake, InvalidURI, NegotiationError, ProtocolError
from wskit.handshake import (
    WSURI,
    accept_key,
    build_accept_response,
    build_request,
    check_request,
    check_response,
    generate_key,
    parse_uri,
    select_subprotocol,
)
from wskit.headers import Headers, parse_subprotocol_header
from wskit.http11 import RequestParser, ResponseParser, build_error_response

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_key_rfc_example() -> None:
    # RFC 6455 §1.3
    assert accept_key(KEY) == ACCEPT


def test_generate_key() -> None:
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(key) == 24
        assert len(base64.b64decode(key, validate=True)) == 16


# parse_uri ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected", "host_header"),
    [
        ("ws://example.com", WSURI(False, "example.com", 80, "/"), "example.com"),
        ("wss://example.com/", WSURI(True, "example.com", 443, "/"), "example.com"),
        ("ws://Example.COM:8080/chat?room=1&x=%20", WSURI(False, "example.com", 8080, "/chat?room=1&x=%20"),
         "example.com:8080"),
        ("WSS://example.com:443/a", WSURI(True, "example.com", 443, "/a"), "example.com"),
        ("ws://example.com:443/", WSURI(False, "example.com", 443, "/"), "example.com:443"),
        ("wss://example.com:80/", WSURI(True, "example.com", 80, "/"), "example.com:80"),
        ("ws://[::1]/", WSURI(False, "::1", 80, "/"), "[::1]"),
        ("ws://[2001:db8::1]:9000/x", WSURI(False, "2001:db8::1", 9000, "/x"), "[2001:db8::1]:9000"),
        ("ws://127.0.0.1:9000?q", WSURI(False, "127.0.0.1", 9000, "/?q"), "127.0.0.1:9000"),
    ],
)
def test_parse_uri(uri: str, expected: WSURI, host_header: str) -> None:
    wsuri = parse_uri(uri)
    assert wsuri == expected
    assert wsuri.host_header == host_header


def test_parse_uri_user_info() -> None:
    wsuri = parse_uri("wss://us%40er:p%3Ass@example.com/")
    assert wsuri.user_info == ("us@er", "p:ss")
    assert wsuri.host == "example.com"
    assert parse_uri("ws://user@example.com/").user_info == ("user", "")
    assert parse_uri("ws://example.com/").user_info is None


def test_parse_uri_iri_is_percent_encoded() -> None:
    wsuri = parse_uri("ws://example.com/caf\xe9?q=\u20ac&r=%41")
    assert wsuri.path == "/caf%C3%A9?q=%E2%82%AC&r=%41"
    assert parse_uri("ws://b\xfccher.example/").host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://example.com/", "scheme must be ws or wss, not 'http'"),
        ("example.com/chat", "scheme must be ws or wss, not 'missing'"),
        ("ws:///chat", "missing host"),
        ("ws://:80/chat", "missing host"),
        ("ws://example.com/chat#frag", "fragments ('#') are not allowed"),
        ("ws://example.com#", "fragments"),
        ("ws://example.com:abc/", "bad port"),
        ("ws://example.com:70000/", "bad port"),
        ("ws://example.com:0/", "port 0"),
        ("ws://example.com/a b", "whitespace or control character at position 18"),
        ("ws://example.com/\r\nX: y", "whitespace or control character at position 17"),
        ("ws://[::1/", "invalid WebSocket URI"),
    ],
)
def test_parse_uri_errors(uri: str, message: str) -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri(uri)
    assert message in str(info.value)
    assert repr(uri) in str(info.value)
    assert isinstance(info.value, ProtocolError) and isinstance(info.value, ValueError)


# build_request ----------------------------------------------------------------------


def test_build_request_minimal() -> None:
    headers, data = build_request(parse_uri("ws://example.com:8080/chat?x=1"), KEY)
    assert headers.items() == [
        ("Host", "example.com:8080"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
        ("User-Agent", USER_AGENT),
    ]
    assert data == b"GET /chat?x=1 HTTP/1.1\r\n" + headers.serialize()


def test_build_request_everything() -> None:
    headers, data = build_request(
        parse_uri("wss://alice:secret@example.com/"),
        KEY,
        origin="https://example.com",
        subprotocols=["chat", "superchat"],
        extensions_header="permessage-deflate; client_max_window_bits",
        extra_headers={"X-Trace": "1"},
        user_agent=None,
    )
    assert headers["Origin"] == "https://example.com"
    assert headers["Sec-WebSocket-Protocol"] == "chat, superchat"
    assert headers["Sec-WebSocket-Extensions"] == "permessage-deflate; client_max_window_bits"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:secret").decode()
    assert "User-Agent" not in headers
    assert headers.items()[-1] == ("X-Trace", "1")  # extras come last
    request = RequestParser().feed(data)
    assert request is not None and request.headers == headers


@pytest.mark.parametrize("extra", [Headers([("A", "1"), ("A", "2")]), [("A", "1"), ("A", "2")]])
def test_build_request_extra_headers_appended(extra: Headers | list[tuple[str, str]]) -> None:
    headers, _ = build_request(parse_uri("ws://h/"), KEY, extra_headers=extra)
    assert headers.get_all("A") == ["1", "2"]


@pytest.mark.parametrize("name", ["Host", "sec-websocket-key", "User-Agent", "Origin"])
def test_build_request_extra_headers_do_not_override(name: str) -> None:
    with pytest.raises(ValueError, match=f"extra header '{name}' conflicts"):
        build_request(parse_uri("ws://h/"), KEY, origin="http://o", extra_headers=[(name, "x")])


def test_build_request_user_agent_can_come_from_extra_headers() -> None:
    headers, _ = build_request(parse_uri("ws://h/"), KEY, user_agent=None, extra_headers=[("User-Agent", "me")])
    assert headers["User-Agent"] == "me"


def test_build_request_refuses_injection() -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        build_request(parse_uri("ws://h/"), KEY, origin="http://o\r\nX: 1")
    with pytest.raises(ValueError, match="not a token"):
        build_request(parse_uri("ws://h/"), KEY, subprotocols=["a b"])


# check_request ----------------------------------------------------------------------


def make_request(*, method: str = "GET", drop: tuple[str, ...] = (), **replace: str | list[str]) -> Request:
    base = {
        "Host": "example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    headers = Headers()
    for name, value in base.items():
        key = name.replace("-", "_")
        if name in drop:
            continue
        new = replace.pop(key, value)
        for v in [new] if isinstance(new, str) else new:
            headers[name] = v
    for key, extra in replace.items():
        for v in [extra] if isinstance(extra, str) else extra:
            headers[key.replace("_", "-")] = v
    return Request("/", headers, method)


def test_check_request_returns_key() -> None:
    assert check_request(make_request()) == KEY


def test_check_request_accepts_token_lists_case_insensitively() -> None:
    request = make_request(Upgrade="h2c, WebSocket", Connection=["keep-alive", "UPGRADE"])
    assert check_request(request) == KEY


def check_fails(request: Request, status: int, message: str, **kwargs: object) -> InvalidHandshake:
    with pytest.raises(InvalidHandshake) as info:
        check_request(request, **kwargs)  # type: ignore[arg-type]
    assert info.value.status == status
    assert message in str(info.value)
    return info.value


def test_check_request_method() -> None:
    exc = check_fails(make_request(method="POST"), 405, "method POST is not allowed")
    assert exc.headers == [("Allow", "GET")]


def test_check_request_host() -> None:
    check_fails(make_request(drop=("Host",)), 400, "missing Host header")
    check_fails(make_request(Host=["a", "b"]), 400, "Host header appears 2 times")


def test_check_request_upgrade() -> None:
    exc = check_fails(make_request(drop=("Upgrade",)), 426, "missing Upgrade header")
    assert ("Upgrade", "websocket") in exc.headers
    exc = check_fails(make_request(Upgrade="h2c"), 426, "Upgrade header does not contain websocket: 'h2c'")
    assert ("Upgrade", "websocket") in exc.headers
    check_fails(make_request(Upgrade="web socket"), 400, "invalid Upgrade header")


def test_check_request_connection() -> None:
    check_fails(make_request(drop=("Connection",)), 400, "missing Connection header")
    check_fails(make_request(Connection="keep-alive"), 400, "Connection header does not contain upgrade")
    check_fails(make_request(Connection="keep alive"), 400, "invalid Connection header")


@pytest.mark.parametrize(
    ("version", "message"),
    [(None, "missing Sec-WebSocket-Version header"), ("8", "unsupported Sec-WebSocket-Version '8'"),
     (["13", "13"], "unsupported Sec-WebSocket-Version '13, 13'"), ("13, 8", "unsupported")],
)
def test_check_request_version(version: str | list[str] | None, message: str) -> None:
    if version is None:
        request = make_request(drop=("Sec-WebSocket-Version",))
    else:
        request = make_request(Sec_WebSocket_Version=version)
    exc = check_fails(request, 426, message)
    assert ("Sec-WebSocket-Version", "13") in exc.headers
    assert ("Upgrade", "websocket") in exc.headers  # a 426 must say what to upgrade to


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "missing Sec-WebSocket-Key header"),
        ([KEY, KEY], "Sec-WebSocket-Key header appears 2 times"),
        ("not base64!", "invalid Sec-WebSocket-Key 'not base64!': expected base64 of 16 bytes"),
        (base64.b64encode(b"x" * 15).decode(), "expected base64 of 16 bytes"),
        (base64.b64encode(b"x" * 17).decode(), "expected base64 of 16 bytes"),
        (KEY.rstrip("="), "expected base64 of 16 bytes"),
        ("\xe9" * 24, "expected base64 of 16 bytes"),
    ],
)
def test_check_request_key(key: str | list[str] | None, message: str) -> None:
    if key is None:
        request = make_request(drop=("Sec-WebSocket-Key",))
    else:
        request = make_request(Sec_WebSocket_Key=key)
    check_fails(request, 400, message)


def test_check_request_origin() -> None:
    allowed = ["https://good.example", None]
    assert check_request(make_request(Origin="https://good.example"), origins=allowed) == KEY
    assert check_request(make_request(), origins=allowed) == KEY
    check_fails(make_request(Origin="https://evil.example"), 403, "Origin 'https://evil.example' is not allowed",
                origins=allowed)
    check_fails(make_request(), 403, "missing Origin header is not allowed", origins=["https://good.example"])
    check_fails(make_request(Origin=["https://good.example"] * 2), 400, "Origin header appears 2 times",
                origins=allowed)
    # origins=None: no check at all
    assert check_request(make_request(Origin="https://evil.example")) == KEY


def test_check_request_error_becomes_an_http_response() -> None:
    with pytest.raises(InvalidHandshake) as info:
        check_request(make_request(Sec_WebSocket_Version="8"))
    exc = info.value
    response = ResponseParser().feed(build_error_response(exc.status, str(exc), exc.headers))
    assert response is not None
    assert response.status_code == 426
    assert response.headers["Sec-WebSocket-Version"] == "13"


# select_subprotocol -------------------------------------------------------------------


def test_select_subprotocol_prefers_server_order() -> None:
    assert select_subprotocol(["a", "b", "c"], ["c", "b"]) == "c"
    assert select_subprotocol(["a"], ["b"]) is None
    assert select_subprotocol([], ["b"]) is None
    assert select_subprotocol(["Chat"], ["chat"]) is None  # case-sensitive


# build_accept_response / check_response -------------------------------------------------


def test_build_accept_response() -> None:
    headers, data = build_accept_response(
        KEY, subprotocol="chat", extensions_header="permessage-deflate", extra_headers=[("X-A", "1")]
    )
    assert headers.items() == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("Sec-WebSocket-Protocol", "chat"),
        ("Server", USER_AGENT),
        ("X-A", "1"),
    ]
    assert data == b"HTTP/1.1 101 Switching Protocols\r\n" + headers.serialize()
    response = ResponseParser().feed(data)
    assert response == Response(101, "Switching Protocols", headers)
    assert check_response(response, KEY, subprotocols_offered=["superchat", "chat"]) == "chat"


def test_build_accept_response_errors() -> None:
    with pytest.raises(ValueError, match="conflicts"):
        build_accept_response(KEY, extra_headers={"Sec-WebSocket-Accept": "x"})
    with pytest.raises(ValueError, match="not a token"):
        build_accept_response(KEY, subprotocol="a b")
    headers, _ = build_accept_response(KEY, server_header=None)
    assert "Server" not in headers


def response_101(**changes: str | list[str] | None) -> Response:
    headers = Headers()
    base: dict[str, str | list[str] | None] = {"Upgrade": "websocket", "Connection": "Upgrade",
                                               "Sec-WebSocket-Accept": ACCEPT}
    base.update({k.replace("_", "-"): v for k, v in changes.items()})
    for name, value in base.items():
        if value is None:
            continue
        for v in [value] if isinstance(value, str) else value:
            headers[name] = v
    return Response(101, "Switching Protocols", headers)


def test_check_response_ok() -> None:
    assert check_response(response_101(), KEY) is None
    assert check_response(response_101(Upgrade="WebSocket", Connection="keep-alive, upgrade"), KEY) is None


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (Response(403, "Forbidden", Headers(), b"go away"), InvalidHandshake,
         "server answered 403 Forbidden instead of 101"),
        (Response(200, "", Headers()), InvalidHandshake, "server answered 200 instead of 101"),
        (response_101(Upgrade=None), InvalidHandshake, "missing Upgrade header in the 101 response"),
        (response_101(Upgrade="h2c"), InvalidHandshake, "Upgrade header is 'h2c', expected 'websocket'"),
        (response_101(Upgrade="websocket, h2c"), InvalidHandshake, "expected 'websocket'"),
        (response_101(Upgrade="web socket"), InvalidHandshake, "invalid Upgrade header"),
        (response_101(Connection=None), InvalidHandshake, "missing Connection header in the 101 response"),
        (response_101(Connection="close"), InvalidHandshake, "Connection header does not contain upgrade: 'close'"),
        (response_101(Sec_WebSocket_Accept=None), InvalidHandshake, "missing Sec-WebSocket-Accept header"),
        (response_101(Sec_WebSocket_Accept="bad"), InvalidHandshake,
         f"Sec-WebSocket-Accept mismatch: expected {ACCEPT!r}, got 'bad'"),
        (response_101(Sec_WebSocket_Accept=[ACCEPT, ACCEPT]), InvalidHandshake,
         "Sec-WebSocket-Accept header appears 2 times"),
        (response_101(Sec_WebSocket_Protocol="other"), NegotiationError,
         "server chose subprotocol 'other', which was not offered (offered: chat)"),
        (response_101(Sec_WebSocket_Protocol="chat, v2"), NegotiationError, "server chose several subprotocols"),
        (response_101(Sec_WebSocket_Protocol=["chat", "chat"]), NegotiationError, "several subprotocols"),
        (response_101(Sec_WebSocket_Protocol="a b"), InvalidHandshake, "invalid Sec-WebSocket-Protocol header"),
    ],
)
def test_check_response_errors(response: Response, error: type[InvalidHandshake], message: str) -> None:
    with pytest.raises(error) as info:
        check_response(response, KEY, subprotocols_offered=["chat"])
    assert message in str(info.value)
    assert info.value.response is response


def test_check_response_subprotocol_without_offer() -> None:
    with pytest.raises(NegotiationError, match="server chose subprotocol 'chat' but none was offered") as info:
        check_response(response_101(Sec_WebSocket_Protocol="chat"), KEY, subprotocols_offered=[])
    assert info.value.response is not None


# End to end ---------------------------------------------------------------------------


def full_handshake(uri: str, subprotocols: list[str], supported: list[str]) -> str | None:
    key = generate_key()
    _, request_bytes = build_request(parse_uri(uri), key, subprotocols=subprotocols, origin="https://o.example")
    request = RequestParser().feed(request_bytes)
    assert request is not None
    server_key = check_request(request, origins=["https://o.example"])
    offered = parse_subprotocol_header(request.headers.get_all("Sec-WebSocket-Protocol"))
    assert offered == subprotocols
    chosen = select_subprotocol(offered, supported)
    _, response_bytes = build_accept_response(server_key, subprotocol=chosen)
    parser = ResponseParser()
    response = parser.feed(response_bytes + b"\x81\x00")
    assert response is not None and parser.leftover() == b"\x81\x00"
    return check_response(response, key, subprotocols_offered=subprotocols)


@given(st.lists(st.sampled_from(["a", "b", "chat", "v2.x"]), unique=True), st.lists(st.sampled_from(["a", "chat"])))
def test_full_handshake(offered: list[str], supported: list[str]) -> None:
    expected = next((s for s in supported if s in offered), None)
    assert full_handshake("wss://example.com/x?y", offered, supported) == expected


# Interoperability with python-websockets ------------------------------------------------


def test_websockets_client_request_passes_check_request() -> None:
    from websockets.client import ClientProtocol as WSClient
    from websockets.uri import parse_uri as ws_parse_uri

    client = WSClient(ws_parse_uri("ws://example.com:8765/chat?x=1"), origin="https://example.com",  # type: ignore[arg-type]
                      subprotocols=["chat"])  # type: ignore[list-item]
    client.send_request(client.connect())
    data = b"".join(client.data_to_send())
    request = RequestParser().feed(data)
    assert request is not None
    assert request.path == "/chat?x=1"
    assert request.headers["Host"] == "example.com:8765"
    key = check_request(request, origins=["https://example.com"])
    _, response_bytes = build_accept_response(key, subprotocol="chat")
    client.receive_data(response_bytes)
    assert client.handshake_exc is None
    assert client.state.name == "OPEN"
    assert client.subprotocol == "chat"


def test_our_request_accepted_by_websockets_server() -> None:
    from websockets.server import ServerProtocol as WSServer

    server = WSServer(subprotocols=["chat"])  # type: ignore[list-item]
    key = generate_key()
    _, request_bytes = build_request(parse_uri("ws://127.0.0.1:9000/path"), key, subprotocols=["v2", "chat"])
    server.receive_data(request_bytes)
    [ws_request] = server.events_received()
    ws_response = server.accept(ws_request)  # type: ignore[arg-type]
    server.send_response(ws_response)
    data = b"".join(server.data_to_send())
    assert ws_response.status_code == 101, data
    response = ResponseParser().feed(data)
    assert response is not None
    assert check_response(response, key, subprotocols_offered=["v2", "chat"]) == "chat"
