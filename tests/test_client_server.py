"""Tests for the opening handshake driven through ClientProtocol and ServerProtocol,
and for the shortcuts that make it cheap (fast paths must agree with the
step-by-step checks; caches must not keep secrets nor leak state between
connections)."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wskit.handshake as handshake
from wskit import ClientProtocol, ServerProtocol, State
from wskit.events import Request, Response, TextMessage
from wskit.exceptions import InvalidHandshake, ProtocolError
from wskit.handshake import accept_key, build_accept_response, check_request, check_response, parse_uri
from wskit.headers import Headers, parse_extension_header
from wskit.http11 import _LINE_CACHE, HTTPLimits, RequestParser, ResponseParser, serialize_response

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def open_pair(**client_kw: object) -> tuple[ClientProtocol, ServerProtocol]:
    client = ClientProtocol("ws://localhost:8765/chat", extensions=[], **client_kw)  # type: ignore[arg-type]
    server = ServerProtocol(extensions=[])
    (request,) = server.receive_data(client.connect()[0])
    assert isinstance(request, Request)
    (response,) = client.receive_data(server.accept(request)[0])
    assert isinstance(response, Response)
    return client, server


def test_request_and_response_stay_readable_after_the_handshake() -> None:
    client, server = open_pair(extra_headers=[("X-Multi", "a"), ("x-multi", "b")])
    assert client.state is State.OPEN and server.state is State.OPEN
    assert server.request is not None and client.response is not None and client.request is not None
    assert server.request.headers["upgrade"] == "websocket"
    assert server.request.headers.get_all("X-MULTI") == ["a", "b"]
    assert server.response is not None and server.response.headers["Sec-WebSocket-Accept"] == accept_key(
        client.request["Sec-WebSocket-Key"]
    )
    assert client.response.headers.get("connection") == "Upgrade"
    assert "Sec-WebSocket-Key" in client.request
    # and the connection works
    assert server.receive_data(b"".join(client.send_text("hi"))) == [TextMessage("hi")]


def test_second_connect_and_receive_before_connect_are_refused() -> None:
    client = ClientProtocol("ws://localhost/", extensions=[])
    with pytest.raises(ProtocolError, match="connect"):
        client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    client.connect()
    with pytest.raises(ProtocolError, match="only be called once"):
        client.connect()
    client, _ = open_pair()
    with pytest.raises(ProtocolError, match="only be called once"):
        client.connect()


def test_line_cache_never_keeps_keys_or_credentials() -> None:
    for _ in range(3):
        client = ClientProtocol("ws://user:secret@localhost/", extensions=[])
        server = ServerProtocol(extensions=[])
        (request,) = server.receive_data(client.connect()[0])
        client.receive_data(server.accept(request)[0])  # type: ignore[arg-type]
        assert server.request is not None and "Authorization" in server.request.headers
    for line in _LINE_CACHE:
        name = line.split(b":", 1)[0].lower()
        assert name not in (b"sec-websocket-key", b"sec-websocket-accept", b"authorization")
    assert any(line == b"Upgrade: websocket" for line in _LINE_CACHE)


def test_uri_with_credentials_is_not_cached() -> None:
    handshake._parse_uri_cached.cache_clear()
    assert parse_uri("ws://a:b@example.com/").user_info == ("a", "b")
    assert parse_uri("ws://example.com/x") is parse_uri("ws://example.com/x")
    assert handshake._parse_uri_cached.cache_info().currsize == 1


def test_cached_header_lines_still_obey_max_line() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a-rather-long-host-name.example.com\r\n\r\n"
    assert RequestParser().feed(head) is not None  # now cached
    with pytest.raises(InvalidHandshake) as info:
        RequestParser(HTTPLimits(max_line=30)).feed(head)
    assert info.value.status == 431


def test_non_http_bytes_fail_at_once() -> None:
    with pytest.raises(InvalidHandshake, match="not an HTTP request") as info:
        RequestParser().feed(b"\x81\x05hello")
    assert info.value.status == 400


def test_accept_response_bytes_match_the_serializer() -> None:
    for kwargs in ({}, {"subprotocol": "chat"}, {"server_header": None}, {"extra_headers": {"X-A": "1"}}):
        headers, data = build_accept_response(KEY, **kwargs)
        assert data == serialize_response(101, "Switching Protocols", headers)
        response = ResponseParser().feed(data)
        assert response is not None and response.headers == headers


def test_extension_header_parse_results_are_independent() -> None:
    values = ["permessage-deflate; client_max_window_bits, x-foo"]
    first = parse_extension_header(values)
    first[0][1].append(("mutated", None))
    first.append(("x-bar", []))
    assert parse_extension_header(values) == [
        ("permessage-deflate", [("client_max_window_bits", None)]),
        ("x-foo", []),
    ]


def test_memory_per_open_pair_is_small() -> None:
    open_pair()  # warm caches
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = [open_pair() for _ in range(200)]
        gc.collect()
        per_pair = (tracemalloc.get_traced_memory()[0] - before) / len(keep)
    finally:
        tracemalloc.stop()
    # python-websockets 17 needs ~6.9 KB per idle pair; wskit stays well below.
    assert per_pair < 5 * 1024, per_pair


# Fast paths agree with the step-by-step checks ------------------------------------

CASINGS = st.sampled_from(["websocket", "WebSocket", "websocket, h2c", "h2c", "", "web socket"])
CONNECTIONS = st.sampled_from(["Upgrade", "upgrade", "keep-alive, Upgrade", "close", "", "Upgrade, Upgrade"])


def outcome(fn: object, *args: object, **kwargs: object) -> tuple[str, object]:
    try:
        return "ok", fn(*args, **kwargs)  # type: ignore[operator]
    except InvalidHandshake as exc:
        return type(exc).__name__, (str(exc), exc.status)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST"]),
    hosts=st.lists(st.sampled_from(["example.com", ""]), max_size=2),
    upgrades=st.lists(CASINGS, max_size=2),
    connections=st.lists(CONNECTIONS, max_size=2),
    versions=st.lists(st.sampled_from(["13", "8", "13, 8"]), max_size=2),
    keys=st.lists(st.sampled_from([KEY, "dGhlIHNhbXBsZSBub25jZQ", "AAAAAAAAAAAAAAAAAAAAAB==", "x"]), max_size=2),
    origins=st.lists(st.sampled_from(["https://a", "https://b"]), max_size=2),
    allowed=st.none() | st.lists(st.sampled_from(["https://a", None]), max_size=2),
)
def test_check_request_fast_path_agrees(
    method: str,
    hosts: list[str],
    upgrades: list[str],
    connections: list[str],
    versions: list[str],
    keys: list[str],
    origins: list[str],
    allowed: list[str | None] | None,
) -> None:
    pairs = [("Host", v) for v in hosts] + [("Upgrade", v) for v in upgrades]
    pairs += [("Connection", v) for v in connections] + [("Sec-WebSocket-Version", v) for v in versions]
    pairs += [("Sec-WebSocket-Key", v) for v in keys] + [("Origin", v) for v in origins]
    request = Request("/", Headers(pairs), method)
    fast = outcome(check_request, request, origins=allowed)
    original = handshake._check_request_fast
    handshake._check_request_fast = lambda request, origins: None
    try:
        slow = outcome(check_request, request, origins=allowed)
    finally:
        handshake._check_request_fast = original
    assert fast == slow


@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from([101, 200]),
    upgrades=st.lists(CASINGS, max_size=2),
    connections=st.lists(CONNECTIONS, max_size=2),
    accepts=st.lists(st.sampled_from([accept_key(KEY), "wrong"]), max_size=2),
    protocols=st.lists(st.sampled_from(["chat", "other"]), max_size=2),
)
def test_check_response_fast_path_agrees(
    status: int, upgrades: list[str], connections: list[str], accepts: list[str], protocols: list[str]
) -> None:
    pairs = [("Upgrade", v) for v in upgrades] + [("Connection", v) for v in connections]
    pairs += [("Sec-WebSocket-Accept", v) for v in accepts] + [("Sec-WebSocket-Protocol", v) for v in protocols]
    response = Response(status, "X", Headers(pairs))

    def run() -> tuple[str, object]:
        try:
            return "ok", check_response(response, KEY, subprotocols_offered=["chat"])
        except InvalidHandshake as exc:
            return type(exc).__name__, str(exc)

    fast = run()
    headers = response.headers
    object.__setattr__(response, "headers", _NotFast(headers))  # not a Headers: the fast path steps aside
    slow = run()
    assert fast == slow


class _NotFast(Headers):
    """A Headers subclass: the fast paths only take exact Headers instances."""

    def __init__(self, headers: Headers) -> None:
        super().__init__(headers)


def test_a_client_extension_factory_bug_fails_the_handshake_clearly() -> None:
    from wskit import ClientProtocol, ServerProtocol, State
    from wskit.exceptions import NegotiationError
    from wskit.extensions.base import ClientExtensionFactory, Extension, ServerExtensionFactory

    class BuggyClientFactory(ClientExtensionFactory):
        name = "x-bug"

        def process_response_params(self, params: object, accepted: object) -> Extension:
            raise KeyError("oops")

    class PlainServerFactory(ServerExtensionFactory):
        name = "x-bug"

        def process_request_params(self, params: object, accepted: object) -> tuple[list[object], Extension]:
            return [], Extension()

    client = ClientProtocol(extensions=[BuggyClientFactory()])
    server = ServerProtocol(extensions=[PlainServerFactory()])  # type: ignore[list-item]
    (request,) = server.receive_data(b"".join(client.connect()))
    with pytest.raises(NegotiationError, match=r"x-bug.*BuggyClientFactory.*KeyError") as info:
        client.receive_data(b"".join(server.accept(request)))
    assert client.state is State.CLOSED and info.value.response is not None


def test_a_server_extension_factory_bug_answers_500() -> None:
    from wskit import ClientProtocol, ServerProtocol, State
    from wskit.exceptions import InvalidHandshake
    from wskit.extensions.base import ClientExtensionFactory, Extension, ServerExtensionFactory

    class OfferFactory(ClientExtensionFactory):
        name = "x-bug"

    class BuggyServerFactory(ServerExtensionFactory):
        name = "x-bug"

        def process_request_params(self, params: object, accepted: object) -> tuple[list[object], Extension]:
            raise RuntimeError("boom")

    client = ClientProtocol(extensions=[OfferFactory()])
    server = ServerProtocol(extensions=[BuggyServerFactory()])  # type: ignore[list-item]
    (request,) = server.receive_data(b"".join(client.connect()))
    with pytest.raises(InvalidHandshake, match=r"BuggyServerFactory.*RuntimeError") as info:
        server.accept(request)
    assert info.value.status == 500 and info.value.to_send[0].startswith(b"HTTP/1.1 500 ")
    assert server.state is State.CLOSED


def test_data_before_accept_is_bounded() -> None:
    from wskit import ClientProtocol, ServerProtocol, State
    from wskit.exceptions import InvalidHandshake

    client = ClientProtocol(extensions=[])
    server = ServerProtocol(extensions=[], max_size=1000)
    (_request,) = server.receive_data(b"".join(client.connect()))
    assert server.receive_data(b"\x00" * 60000) == []  # one message's worth is kept for later
    with pytest.raises(InvalidHandshake, match="before the handshake was answered") as info:
        server.receive_data(b"\x00" * 10000)
    assert info.value.to_send[0].startswith(b"HTTP/1.1 400 ")
    assert server.state is State.CLOSED


# -- config=: any object with options_for(kind, given) ------------------------------------------


class Settings:
    """Not a wskit.config.Config: the core only calls options_for."""

    def __init__(self, *, client_uri: str | None = None, **values: object) -> None:
        self.values = values
        self.client_uri = client_uri
        self.calls: list[tuple[str, dict[str, object]]] = []

    def options_for(self, kind: str, given: dict[str, object]) -> dict[str, object]:
        self.calls.append((kind, dict(given)))
        own = {"uri": self.client_uri} if kind == "client_protocol" and self.client_uri else {}
        return {**self.values, **own, **given}


def test_config_is_any_object_with_options_for() -> None:
    settings = Settings(max_size=100, subprotocols=["chat"], extensions=[], client_uri="ws://example.com/room")
    client = ClientProtocol(config=settings)
    server = ServerProtocol(config=settings, max_size=None)
    assert settings.calls == [("client_protocol", {}), ("server_protocol", {"max_size": None})]
    assert client.max_size == 100 and server.max_size is None  # given in the call: wins
    (request,) = server.receive_data(b"".join(client.connect()))
    assert isinstance(request, Request)
    assert request.path == "/room"
    client.receive_data(b"".join(server.accept(request)))
    assert client.subprotocol == server.subprotocol == "chat"


def test_config_counts_a_positional_uri_as_given() -> None:
    settings = Settings(client_uri="ws://example.com/from-settings", extensions=[])
    client = ClientProtocol("ws://other.example/from-call", config=settings)
    assert settings.calls == [("client_protocol", {"uri": "ws://other.example/from-call"})]
    assert client.wsuri.path == "/from-call"


def test_config_none_changes_nothing_and_a_wrong_object_is_refused() -> None:
    assert ClientProtocol(config=None).max_size == ServerProtocol().max_size == 2**20
    with pytest.raises(TypeError, match=r"options_for\(kind, given\) method, got dict"):
        ServerProtocol(config={"max_size": 1})  # type: ignore[arg-type]


def test_config_from_a_yaml_file_reaches_the_protocols() -> None:
    from wskit.config import loads

    config = loads("max_size: 10\nsubprotocols: [chat]\ncompression: false\nclient: {uri: 'ws://example.com/x'}\n")
    client, server = ClientProtocol(config=config), ServerProtocol(config=config, max_size=99)
    assert (client.max_size, server.max_size) == (10, 99)
    (request,) = server.receive_data(b"".join(client.connect()))
    assert isinstance(request, Request) and request.path == "/x"
    assert "permessage-deflate" not in (request.headers.get("Sec-WebSocket-Extensions") or "")  # compression: false
    client.receive_data(b"".join(server.accept(request)))
    assert client.subprotocol == server.subprotocol == "chat"
