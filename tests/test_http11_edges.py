"""Tests for wskit.http11 at its edges: any buffer type and any chunking parse alike, and errors in
trailer lines name the trailer line."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit.exceptions import InvalidHandshake
from wskit.http11 import HTTPLimits, RequestParser, ResponseParser

REQUEST = (b"GET /chat?room=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
RESPONSE = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nno \r\n3\r\nway\r\n0\r\nX-Trailer: 1\r\n\r\n")

BUFFERS: list[Callable[[bytes], bytes | bytearray | memoryview]] = [bytes, bytearray, memoryview]


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@given(st.lists(st.integers(min_value=0), max_size=4), st.sampled_from(BUFFERS))
def test_request_parses_alike_from_any_buffer_type_and_chunking(
        cuts: list[int], kind: Callable[[bytes], bytes | bytearray | memoryview]) -> None:
    parser = RequestParser()
    results = [parser.feed(kind(piece)) for piece in pieces(REQUEST, cuts)]
    request = results[-1]
    assert request is not None and all(r is None for r in results[:-1])
    assert (request.method, request.path) == ("GET", "/chat?room=1")
    assert request.headers["Sec-WebSocket-Key"] == "dGhlIHNhbXBsZSBub25jZQ=="


@given(st.lists(st.integers(min_value=0), max_size=4), st.sampled_from(BUFFERS))
def test_response_parses_alike_from_any_buffer_type_and_chunking(
        cuts: list[int], kind: Callable[[bytes], bytes | bytearray | memoryview]) -> None:
    parser = ResponseParser()
    results = [parser.feed(kind(piece)) for piece in pieces(RESPONSE, cuts)]
    response = results[-1]
    assert response is not None and all(r is None for r in results[:-1])
    assert (response.status_code, response.reason_phrase, response.body) == (403, "Forbidden", b"no way")


@pytest.mark.parametrize(("trailers", "message"), [
    (b"X-Ok: 1\r\nX-Bad: 1\n\r\n", "trailer line 2: line ends with a bare LF instead of CRLF"),
    (b"X-Bad: a\rb\r\n\r\n", "trailer line 1: bare CR in line"),
])
def test_an_error_in_a_trailer_names_the_trailer_line(trailers: bytes, message: str) -> None:
    parser = ResponseParser()
    head = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n"
    with pytest.raises(InvalidHandshake, match=message):
        parser.feed(head + trailers)


def test_a_header_line_seen_before_still_obeys_a_smaller_max_line() -> None:
    line = b"X-Long-Enough: " + b"v" * 40
    start, rest = REQUEST.split(b"\r\n", 1)
    request = start + b"\r\n" + line + b"\r\n" + rest
    assert RequestParser().feed(request) is not None  # parsed (and remembered) under the default limits
    with pytest.raises(InvalidHandshake, match="line longer than 40 bytes") as info:
        RequestParser(HTTPLimits(max_line=40)).feed(request)
    assert info.value.status == 431


def test_the_header_line_cache_stays_bounded() -> None:
    from wskit import http11

    for i in range(700):
        request = REQUEST[:-2] + f"X-Request-Id: {i}\r\n\r\n".encode()
        parsed = RequestParser().feed(request)
        assert parsed is not None and parsed.headers["X-Request-Id"] == str(i)
    assert len(http11._LINE_CACHE) <= http11._LINE_CACHE_SIZE
