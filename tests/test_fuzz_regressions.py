"""Inputs the fuzzers (tests/fuzz) found, kept as plain tests: each broke a documented contract once."""

from __future__ import annotations

import pytest

from wskit.config import loads
from wskit.exceptions import ConfigError

# -- configuration loader: every error names FILE:LINE ------------------------------------------


@pytest.mark.parametrize(("text", "line", "char"), [
    ("\x08", 1, "U+0008"),  # found by test_fuzz_config_loader: the error had no line, and a YAML-internal position
    ("max_size: 1\nmax_queue: \x01\n", 2, "U+0001"),
    ("server:\n  host: a\ufffe\n", 2, "U+FFFE"),
])
def test_config_character_yaml_refuses_names_file_and_line(text: str, line: int, char: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads(text, "fuzz.yaml")
    (error,) = info.value.errors
    assert error.startswith(f"fuzz.yaml:{line}: invalid YAML: character {char} is not allowed"), error
    assert "<unicode string>" not in error


# -- HTTP/1.1 request parser ---------------------------------------------------------------------------


def test_request_parser_keeps_the_bytes_after_the_head_when_fed_in_small_chunks() -> None:
    # From test_fuzz_request_parser (the target expected the whole input's tail;
    # only what arrived with the head's end can be left over).
    from wskit.http11 import RequestParser

    parser = RequestParser()
    data = b"! !!! HTTP/1.1\r\n!:             \r\n\r\n\x00\x01"
    chunks = [data[i:i + 2] for i in range(0, len(data), 2)]
    results = [parser.feed(chunk) for chunk in chunks[:18]]
    assert results[:17] == [None] * 17
    request = results[17]  # the chunk b"\n\x00" ends the head
    assert request is not None and (request.method, request.path) == ("!", "!!!")
    assert request.headers.get("!") == ""
    assert parser.leftover() == b"\x00"


# -- the server's opening handshake ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [b":chat, superchat", b"chat superchat", b"\"chat\""])
def test_malformed_subprotocol_header_is_answered_with_400_by_receive_data(value: bytes) -> None:
    # Found by test_fuzz_server_handshake: the request was accepted by receive_data,
    # then accept() raised InvalidHandshake with nothing to send and the state still CONNECTING.
    from wskit import ServerProtocol, State
    from wskit.exceptions import InvalidHandshake

    server = ServerProtocol()
    request = (b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Protocol: " + value + b"\r\n\r\n")
    with pytest.raises(InvalidHandshake) as info:
        server.receive_data(request)
    assert info.value.status == 400
    assert "Sec-WebSocket-Protocol" in str(info.value)
    (response,) = info.value.to_send
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert server.state is State.CLOSED
