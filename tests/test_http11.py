"""Tests for wskit.http11: bounded incremental HTTP/1.1 parsing and serialization."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit.events import Request, Response
from wskit.exceptions import ConfigError, InvalidHandshake, ProtocolError
from wskit.headers import Headers
from wskit.http11 import (
    HTTPLimits,
    RequestParser,
    ResponseParser,
    build_error_response,
    serialize_request,
    serialize_response,
)

REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
RESPONSE_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)
FRAMES = b"\x81\x05hello\x89\x00"


def feed_bytewise(parser: RequestParser | ResponseParser, data: bytes) -> list[object]:
    results = [parser.feed(data[i : i + 1]) for i in range(len(data))]
    return [r for r in results if r is not None]


# HTTPLimits ----------------------------------------------------------------------


def test_limits_defaults() -> None:
    limits = HTTPLimits()
    assert (limits.max_line, limits.max_headers, limits.max_header_bytes, limits.max_body) == (8192, 128, 65536, 65536)


@pytest.mark.parametrize(
    "kwargs", [{"max_line": 0}, {"max_headers": -1}, {"max_body": 1.5}, {"max_header_bytes": True}]
)
def test_limits_validated(kwargs: dict[str, object]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ConfigError, match=f"HTTPLimits.{name} must be a positive int"):
        HTTPLimits(**kwargs)  # type: ignore[arg-type]


def test_parser_needs_limits_object() -> None:
    with pytest.raises(TypeError):
        RequestParser(8192)  # type: ignore[arg-type]


# RequestParser ----------------------------------------------------------------------


def test_request_parsed() -> None:
    parser = RequestParser()
    request = parser.feed(REQUEST + FRAMES)
    assert isinstance(request, Request)
    assert request.method == "GET"
    assert request.path == "/chat?room=1"
    assert request.headers["host"] == "example.com"
    assert request.headers.keys() == ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"]
    assert parser.leftover() == FRAMES


def test_request_one_byte_at_a_time() -> None:
    parser = RequestParser()
    results = feed_bytewise(parser, REQUEST + FRAMES)
    assert results == [RequestParser().feed(REQUEST)]
    assert parser.leftover() == FRAMES


def test_request_incomplete_returns_none_and_leftover_empty() -> None:
    parser = RequestParser()
    assert parser.feed(REQUEST[:-1]) is None
    assert parser.leftover() == b""
    with pytest.raises(InvalidHandshake, match="connection closed before the request head was complete"):
        parser.feed_eof()


def test_request_data_after_completion_goes_to_leftover() -> None:
    parser = RequestParser()
    assert parser.feed(REQUEST + b"\x81") is not None
    assert parser.feed(b"\x00") is None
    assert parser.leftover() == b"\x81\x00"
    parser.feed_eof()  # complete: no error


def test_request_ows_stripped_and_empty_value() -> None:
    request = RequestParser().feed(b"GET / HTTP/1.1\r\nA: \t x y \t\r\nB:\r\n\r\n")
    assert request is not None
    assert request.headers.items() == [("A", "x y"), ("B", "")]


def test_request_obs_text_in_value_kept() -> None:
    request = RequestParser().feed(b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n")
    assert request is not None and request.headers["X"] == "caf\xe9"


def test_request_content_length_zero_accepted() -> None:
    assert RequestParser().feed(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n") is not None


def request_error(data: bytes, limits: HTTPLimits | None = None) -> InvalidHandshake:
    parser = RequestParser(limits or HTTPLimits())
    with pytest.raises(InvalidHandshake) as info:
        parser.feed(data)
    return info.value


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", 505, "request line: unsupported HTTP version HTTP/1.0, expected HTTP/1.1"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "unsupported HTTP version HTTP/2.0"),
        (b"GET / HTTP/1.1x\r\n\r\n", 400, "request line: invalid HTTP version b'HTTP/1.1x'"),
        (b"GET / http/1.1\r\n\r\n", 400, "invalid HTTP version"),
        (b"GET /\r\n\r\n", 400, "request line: expected 'METHOD TARGET HTTP/1.1'"),
        (b"GET  / HTTP/1.1\r\n\r\n", 400, "expected 'METHOD TARGET HTTP/1.1'"),
        (b"GET / x HTTP/1.1\r\n\r\n", 400, "expected 'METHOD TARGET HTTP/1.1'"),
        (b"\r\n", 400, "expected 'METHOD TARGET HTTP/1.1'"),
        (b"G(T / HTTP/1.1\r\n\r\n", 400, "request line: invalid method"),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400, "request line: invalid request target"),
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "request line: line ends with a bare LF instead of CRLF"),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "header line 1: line ends with a bare LF instead of CRLF"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "header line 2: line ends with a bare LF"),
        (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, "header line 1: bare CR in line"),
        (b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n continued\r\n\r\n", 400,
         "header line 3: obs-fold (continuation line) is not allowed"),
        (b"GET / HTTP/1.1\r\n\tcontinued\r\n\r\n", 400, "header line 1: obs-fold"),
        (b"GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, "header line 1: missing colon"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "header line 1: whitespace before colon"),
        (b"GET / HTTP/1.1\r\n: a\r\n\r\n", 400, "header line 1: empty header name"),
        (b"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", 400, "header line 1: invalid header name"),
        (b"GET / HTTP/1.1\r\nH\xc3\xb6st: a\r\n\r\n", 400, "header line 1: invalid header name"),
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400, "header line 1: control character b'\\x00' in value of Host"),
        (b"GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", 400, "control character"),
        (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400, "request has a body (Content-Length: 5)"),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "request has a body"),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "request has a body (Transfer-Encoding)"),
    ],
)
def test_request_errors(data: bytes, status: int, message: str) -> None:
    exc = request_error(data)
    assert exc.status == status
    assert message in str(exc)
    # The same error whatever the chunking.
    parser = RequestParser()
    with pytest.raises(InvalidHandshake) as info:
        feed_bytewise(parser, data)
    assert str(info.value) == str(exc) and info.value.status == status


def test_request_line_too_long_fails_before_crlf() -> None:
    limits = HTTPLimits(max_line=100)
    parser = RequestParser(limits)
    assert parser.feed(b"GET /" + b"a" * 95) is None  # 100 bytes: still fine
    assert parser.feed(b"\r") is None  # the CR may belong to the CRLF
    parser = RequestParser(limits)
    with pytest.raises(InvalidHandshake) as info:
        parser.feed(b"GET /" + b"a" * 97)  # no CRLF yet, already too long
    assert info.value.status == 431
    assert str(info.value) == "request line: line longer than 100 bytes"


def test_request_header_line_too_long() -> None:
    exc = request_error(b"GET / HTTP/1.1\r\nA: " + b"x" * 200, HTTPLimits(max_line=100))
    assert exc.status == 431
    assert str(exc) == "header line 1: line longer than 100 bytes"


def test_request_line_of_exactly_max_line_accepted() -> None:
    line = b"X: " + b"y" * 97
    assert RequestParser(HTTPLimits(max_line=100)).feed(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n") is not None


def test_request_too_many_headers() -> None:
    data = b"GET / HTTP/1.1\r\n" + b"A: 1\r\n" * 5
    assert RequestParser(HTTPLimits(max_headers=5)).feed(data + b"\r\n") is not None
    exc = request_error(data + b"A: 1\r\n\r\n", HTTPLimits(max_headers=5))
    assert exc.status == 431
    assert str(exc) == "more than 5 header lines"


def test_request_head_too_big_fails_before_crlf() -> None:
    limits = HTTPLimits(max_header_bytes=100)
    parser = RequestParser(limits)
    parser.feed(b"GET / HTTP/1.1\r\n" + b"A: 1\r\n" * 12)  # 88 bytes
    with pytest.raises(InvalidHandshake) as info:
        parser.feed(b"B: " + b"x" * 20)  # incomplete line pushes the head over 100
    assert info.value.status == 431
    assert str(info.value) == "request head larger than 100 bytes"


def test_request_error_is_sticky() -> None:
    parser = RequestParser()
    with pytest.raises(InvalidHandshake) as first:
        parser.feed(b"GET / HTTP/1.1\r\nbad\r\n")
    with pytest.raises(InvalidHandshake) as second:
        parser.feed(b"\r\n")
    assert second.value is first.value


# ResponseParser --------------------------------------------------------------------


def test_response_101_with_frames() -> None:
    parser = ResponseParser()
    response = parser.feed(RESPONSE_101 + FRAMES)
    assert isinstance(response, Response)
    assert (response.status_code, response.reason_phrase, response.body) == (101, "Switching Protocols", b"")
    assert response.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert parser.leftover() == FRAMES
    assert parser.feed_eof() is None  # already returned


def test_response_101_one_byte_at_a_time() -> None:
    parser = ResponseParser()
    assert feed_bytewise(parser, RESPONSE_101 + FRAMES) == [ResponseParser().feed(RESPONSE_101)]
    assert parser.leftover() == FRAMES


def test_response_101_even_with_content_length_has_no_body() -> None:
    parser = ResponseParser()
    response = parser.feed(RESPONSE_101.replace(b"\r\n\r\n", b"\r\nContent-Length: 4\r\n\r\n") + b"\x81\x00")
    assert response is not None and response.body == b""
    assert parser.leftover() == b"\x81\x00"


@pytest.mark.parametrize(
    ("line", "status", "reason"),
    [(b"HTTP/1.1 101", 101, ""), (b"HTTP/1.1 101 ", 101, ""), (b"HTTP/1.1 404 Not  Found", 404, "Not  Found"),
     (b"HTTP/1.0 403 Forbidden", 403, "Forbidden")],
)
def test_response_status_lines(line: bytes, status: int, reason: str) -> None:
    extra = b"" if status == 101 else b"Content-Length: 0\r\n"
    response = ResponseParser().feed(line + b"\r\n" + extra + b"\r\n")
    assert response is not None
    assert (response.status_code, response.reason_phrase) == (status, reason)


def test_response_content_length_body() -> None:
    data = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nForbidden"
    parser = ResponseParser()
    assert parser.feed(data[:-1]) is None
    response = parser.feed(data[-1:] + b"extra")
    assert response is not None and response.body == b"Forbidden"
    assert parser.leftover() == b"extra"
    assert feed_bytewise(ResponseParser(), data) == [response]


def test_response_repeated_identical_content_length() -> None:
    data = b"HTTP/1.1 400 Bad\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok"
    response = ResponseParser().feed(data)
    assert response is not None and response.body == b"ok"


def test_response_content_length_truncated_at_max_body() -> None:
    parser = ResponseParser(HTTPLimits(max_body=10))
    # Returns as soon as max_body bytes arrived, without waiting for the rest.
    response = parser.feed(b"HTTP/1.1 500 Oops\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 10)
    assert response is not None and response.body == b"x" * 10


def test_response_chunked_body() -> None:
    data = (
        b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n05 \r\nworld\r\n0\r\nTrailer: x\r\n\r\n"
    )
    response = ResponseParser().feed(data + b"after")
    assert response is not None and response.body == b"hello world"
    assert feed_bytewise(ResponseParser(), data) == [response]
    parser = ResponseParser()
    parser.feed(data + b"after")
    assert parser.leftover() == b"after"


def test_response_chunked_truncated_at_max_body() -> None:
    parser = ResponseParser(HTTPLimits(max_body=8))
    response = parser.feed(b"HTTP/1.1 500 X\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwor")
    assert response is not None and response.body == b"hellowor"


def test_response_body_until_eof() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n\r\nno ") is None
    assert parser.feed(b"way") is None
    response = parser.feed_eof()
    assert response is not None and response.body == b"no way"


def test_response_body_until_eof_capped() -> None:
    parser = ResponseParser(HTTPLimits(max_body=4))
    response = parser.feed(b"HTTP/1.1 403 Forbidden\r\n\r\nabcdefgh")
    assert response is not None and response.body == b"abcd"


def test_response_transfer_encoding_without_chunked_reads_until_eof() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 403 F\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\nabc") is None
    response = parser.feed_eof()
    assert response is not None and response.body == b"abc"


@pytest.mark.parametrize("status", [204, 304, 100])
def test_response_without_body(status: int) -> None:
    response = ResponseParser().feed(f"HTTP/1.1 {status} X\r\n\r\n".encode())
    assert response is not None and response.status_code == status and response.body == b""


def test_response_eof_errors() -> None:
    with pytest.raises(InvalidHandshake, match="connection closed before any response was received"):
        ResponseParser().feed_eof()
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 101 Switching")
    with pytest.raises(InvalidHandshake, match="connection closed before the response head was complete"):
        parser.feed_eof()
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(InvalidHandshake, match=r"body was complete \(3 bytes received\)") as info:
        parser.feed_eof()
    assert info.value.response is not None
    assert info.value.response.status_code == 403 and info.value.response.body == b"abc"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1\r\n\r\n", "status line: expected 'HTTP/1.1 CODE REASON'"),
        (b"HTTP/2 101 X\r\n\r\n", "status line: invalid HTTP version b'HTTP/2'"),
        (b"HTTP/2.0 101 X\r\n\r\n", "status line: unsupported HTTP version HTTP/2.0"),
        (b"HTTP/1.0 101 X\r\n\r\n", "status line: 101 Switching Protocols over HTTP/1.0"),
        (b"HTTP/1.1 1O1 X\r\n\r\n", "status line: invalid status code b'1O1'"),
        (b"HTTP/1.1 099 X\r\n\r\n", "invalid status code"),
        (b"HTTP/1.1 101 X\x01\r\n\r\n", "status line: control character in reason phrase"),
        (b"HTTP/1.1 101 X\nA: b\r\n\r\n", "status line: line ends with a bare LF"),
        (b"HTTP/1.1 101 X\r\nA: b\r\n c\r\n\r\n", "header line 2: obs-fold"),
        (b"HTTP/1.1 101 X\r\nA b\r\n\r\n", "header line 1: missing colon"),
        (b"HTTP/1.1 400 X\r\nContent-Length: 1, 2\r\n\r\n", "conflicting Content-Length values: 1, 2"),
        (b"HTTP/1.1 400 X\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length: '-1'"),
        (b"HTTP/1.1 400 X\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size line: b'zz'"),
        (b"HTTP/1.1 400 X\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", "chunk data not followed by CRLF"),
        (b"HTTP/1.1 400 X\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\rx", "chunk data not followed by CRLF"),
        (b"HTTP/1.1 400 X\r\nTransfer-Encoding: a b\r\n\r\n", "invalid Transfer-Encoding header"),
    ],
)
def test_response_errors(data: bytes, message: str) -> None:
    with pytest.raises(InvalidHandshake) as info:
        ResponseParser().feed(data)
    assert message in str(info.value)
    with pytest.raises(InvalidHandshake) as info2:
        feed_bytewise(ResponseParser(), data)
    assert str(info2.value) == str(info.value)


def test_response_limits() -> None:
    with pytest.raises(InvalidHandshake, match="status line: line longer than 50 bytes"):
        ResponseParser(HTTPLimits(max_line=50)).feed(b"HTTP/1.1 101 " + b"x" * 60)
    with pytest.raises(InvalidHandshake, match="more than 2 header lines"):
        ResponseParser(HTTPLimits(max_headers=2)).feed(b"HTTP/1.1 101 X\r\nA: 1\r\nA: 1\r\nA: 1\r\n")
    with pytest.raises(InvalidHandshake, match="response head larger than 60 bytes"):
        ResponseParser(HTTPLimits(max_header_bytes=60)).feed(b"HTTP/1.1 101 X\r\n" + b"A: 1\r\n" * 10)
    with pytest.raises(InvalidHandshake, match="chunk size line: line longer than 30 bytes"):
        ResponseParser(HTTPLimits(max_line=30)).feed(
            b"HTTP/1.1 400 X\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"x" * 40
        )
    with pytest.raises(InvalidHandshake, match="more than 2 trailer lines"):
        ResponseParser(HTTPLimits(max_headers=2)).feed(
            b"HTTP/1.1 400 X\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nA: 1\r\nA: 1\r\n"
        )


# Serialization -----------------------------------------------------------------------


def test_serialize_request() -> None:
    headers = Headers([("Host", "example.com")])
    data = serialize_request("GET", "/chat?x=1", headers)
    assert data == b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    request = RequestParser().feed(data)
    assert request == Request("/chat?x=1", headers, "GET")


@pytest.mark.parametrize(("method", "target"), [("G T", "/"), ("", "/"), ("GET", "/a b"), ("GET", ""),
                                                 ("GET", "/\r\nX: y"), ("GET", "/caf\xe9")])
def test_serialize_request_refuses_bad_input(method: str, target: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        serialize_request(method, target, Headers())


def test_serialize_response_default_reason_and_content_length() -> None:
    headers = Headers([("Content-Type", "text/plain")])
    data = serialize_response(404, None, headers, b"nope")
    assert data == b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope"
    assert headers.items() == [("Content-Type", "text/plain")]  # not modified
    response = ResponseParser().feed(data)
    assert response is not None and (response.status_code, response.reason_phrase, response.body) == (
        404, "Not Found", b"nope")


def test_serialize_response_101_and_unknown_status() -> None:
    assert serialize_response(101, None, Headers()) == b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    assert serialize_response(599, None, Headers()) == b"HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n"
    assert serialize_response(200, "OK", Headers([("Content-Length", "2")]), b"hi").endswith(b"Length: 2\r\n\r\nhi")


@pytest.mark.parametrize(("status", "reason", "body"), [(99, None, b""), (1000, None, b""), (200, "O\r\nK", b""),
                                                        (101, None, b"x"), (204, None, b"x")])
def test_serialize_response_refuses_bad_input(status: int, reason: str | None, body: bytes) -> None:
    with pytest.raises(ValueError):
        serialize_response(status, reason, Headers(), body)


def test_build_error_response() -> None:
    data = build_error_response(403, "Origin 'x' is not allowed")
    response = ResponseParser().feed(data)
    assert response is not None
    assert response.status_code == 403 and response.reason_phrase == "Forbidden"
    assert response.headers["Connection"] == "close"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.body == b"Origin 'x' is not allowed\n"


def test_build_error_response_426_keeps_upgrade_headers() -> None:
    data = build_error_response(426, "unsupported version", [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")])
    response = ResponseParser().feed(data)
    assert response is not None and response.status_code == 426
    assert response.headers["Connection"] == "Upgrade, close"  # RFC 7230 §6.7
    assert response.headers["Upgrade"] == "websocket"
    assert response.headers["Sec-WebSocket-Version"] == "13"


def test_build_error_response_utf8_body_and_no_duplicate_framing_headers() -> None:
    data = build_error_response(400, "caf\xe9", Headers([("Content-Length", "999"), ("Connection", "keep-alive")]))
    response = ResponseParser().feed(data)
    assert response is not None and response.body == "caf\xe9\n".encode()
    assert response.headers.get_all("Content-Length") == [str(len("caf\xe9\n".encode()))]
    assert response.headers.get_all("Connection") == ["close"]


# Fuzzing --------------------------------------------------------------------------

SMALL = HTTPLimits(max_line=64, max_headers=6, max_header_bytes=200, max_body=50)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def check_bounded(parser: RequestParser | ResponseParser, limits: HTTPLimits) -> None:
    # Between calls, only an incomplete line (and its CR) is buffered.
    assert len(parser._buf) <= limits.max_line + 1
    assert len(parser._items) <= limits.max_headers
    if isinstance(parser, ResponseParser):
        assert len(parser._body) <= limits.max_body


http_like = st.lists(
    st.sampled_from([b"GET / HTTP/1.1", b"HTTP/1.1 101 X", b"HTTP/1.1 403 F", b"\r\n", b"\r", b"\n", b"A: b",
                     b"Content-Length: 5", b"Transfer-Encoding: chunked", b"5", b"0", b" ", b":", b"\x00", b"x" * 70])
    | st.binary(max_size=20),
    max_size=30,
).map(b"".join)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=400), http_like), st.lists(st.integers(0, 1000), max_size=20), st.booleans())
def test_fuzz_request_parser(data: bytes, cuts: list[int], eof: bool) -> None:
    parser = RequestParser(SMALL)
    try:
        for piece in chunked(data, cuts):
            if parser.feed(piece) is None and parser.leftover() == b"":
                check_bounded(parser, SMALL)
        if eof:
            parser.feed_eof()
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=400), http_like), st.lists(st.integers(0, 1000), max_size=20), st.booleans())
def test_fuzz_response_parser(data: bytes, cuts: list[int], eof: bool) -> None:
    parser = ResponseParser(SMALL)
    try:
        for piece in chunked(data, cuts):
            result = parser.feed(piece)
            if result is None and parser.leftover() == b"":
                check_bounded(parser, SMALL)
            if result is not None:
                assert len(result.body) <= SMALL.max_body
        if eof:
            result = parser.feed_eof()
            if result is not None:
                assert len(result.body) <= SMALL.max_body
    except ProtocolError:
        pass


TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.text(alphabet=TCHARS, min_size=1, max_size=10).filter(
    lambda n: n.lower() not in ("content-length", "transfer-encoding")
)
vals = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
               max_size=15).map(lambda v: v.strip(" "))
targets = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)


@given(st.sampled_from(["GET", "POST", "X-Y"]), targets, st.lists(st.tuples(names, vals), max_size=10),
       st.binary(max_size=30), st.lists(st.integers(0, 10_000), max_size=30))
def test_any_chunking_of_a_request_gives_the_same_result(
    method: str, target: str, pairs: list[tuple[str, str]], tail: bytes, cuts: list[int]
) -> None:
    headers = Headers(pairs)
    data = serialize_request(method, target, headers) + tail
    parser = RequestParser()
    results = [r for r in (parser.feed(p) for p in chunked(data, cuts)) if r is not None]
    assert results == [Request(target, headers, method)]
    assert results[0].headers.items() == pairs
    assert parser.leftover() == tail


@given(st.sampled_from([101, 200, 403, 404, 500]), st.lists(st.tuples(names, vals), max_size=8),
       st.binary(max_size=80), st.sampled_from(["length", "chunked", "eof"]), st.binary(max_size=20),
       st.lists(st.integers(0, 10_000), max_size=30))
def test_any_chunking_of_a_response_gives_the_same_result(
    status: int, pairs: list[tuple[str, str]], body: bytes, framing: str, tail: bytes, cuts: list[int]
) -> None:
    headers = Headers(pairs)
    if status == 101:
        body, framing = b"", "101"
        encoded = b""
    elif framing == "length":
        headers["Content-Length"] = str(len(body))
        encoded = body
    elif framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        pieces = chunked(body, cuts[:3])
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n\r\n"
    else:
        tail = b""
        encoded = body
    wire = b"HTTP/1.1 %d Some Reason\r\n" % status + headers.serialize() + encoded + tail
    parser = ResponseParser()
    results = [r for r in (parser.feed(p) for p in chunked(wire, cuts)) if r is not None]
    if framing == "eof":
        assert results == []
        final = parser.feed_eof()
        assert final is not None
        results = [final]
    assert len(results) == 1
    response = results[0]
    assert response == Response(status, "Some Reason", headers, body)
    if framing in ("101", "length", "chunked"):
        assert parser.leftover() == tail
