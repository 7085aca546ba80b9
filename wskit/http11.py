"""Incremental, bounded HTTP/1.1 parsing and serialization (RFC 7230).

Only what the WebSocket opening handshake needs: a request head (the
client's upgrade request, which has no body) and a response (a ``101`` head,
or an error response with a body the client may want to show).

Parsers are sans-I/O: :meth:`RequestParser.feed` and
:meth:`ResponseParser.feed` take bytes in any chunking (one byte at a time
included) and return the event once it is complete. Bytes that follow it are
kept in :meth:`~RequestParser.leftover` (after a handshake they are
WebSocket frames). Work is linear in the input and memory is bounded by
:class:`HTTPLimits`: a limit is enforced as soon as it is exceeded, without
waiting for the end of the line.

Status codes used by :class:`RequestParser` errors
(``InvalidHandshake.status``):

* ``400 Bad Request``: malformed request line or header line (bare CR or LF,
  obs-fold, missing colon, whitespace before the colon, invalid name, control
  character in a value), a request with a body.
* ``505 HTTP Version Not Supported``: a well-formed version other than
  ``HTTP/1.1`` (RFC 6455 §4.1 requires HTTP/1.1).
* ``431 Request Header Fields Too Large``: a line longer than ``max_line``,
  more than ``max_headers`` header lines, or a head larger than
  ``max_header_bytes`` (RFC 6585 §5).
"""

from __future__ import annotations

import http
import re
from dataclasses import dataclass
from typing import NoReturn

from .events import Request, Response
from .exceptions import ConfigError, InvalidHandshake
from .headers import Headers, HeadersLike, is_token, parse_token_list

__all__ = [
    "HTTPLimits",
    "RequestParser",
    "ResponseParser",
    "serialize_request",
    "serialize_response",
    "build_error_response",
]

# RFC 7230 §3.2.6 token, as bytes.
_TOKEN_B = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# RFC 7230 §3.2: field-content is VCHAR / obs-text / SP / HTAB.
_CTL_B = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 7230 §5.3: request-target; we only refuse what cannot appear in one.
_TARGET_B = re.compile(rb"[\x21-\x7e]+")
_VERSION_B = re.compile(rb"HTTP/([0-9])\.([0-9])")
_STATUS_B = re.compile(rb"[0-9]{3}")
_TCHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_CHUNK_SIZE_B = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;.*)?")
_TARGET_S = re.compile(r"[\x21-\x7e]+")
# A well-formed header line (fast path); anything else goes through the
# line-by-line checks that explain what is wrong.
_HEADER_FAST_B = re.compile(
    rb"([-!#$%&'*+.^_`|~0-9A-Za-z]+):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*"
)

# Response statuses that never have a body (RFC 7230 §3.3.3, item 1).
_NO_BODY = frozenset({204, 304})

# Header lines seen before -> their parsed (name, value): clients and servers
# see the same lines over and over ("Upgrade: websocket", "Host: ..."), so
# each connection's headers share these strings instead of holding copies.
# Bounded (cleared when full); lines with per-connection secrets or nonces
# are never kept.
_LINE_CACHE: dict[bytes, tuple[str, str]] = {}
_LINE_CACHE_SIZE = 512
_LINE_CACHE_MAX_LINE = 128
_UNCACHED_NAMES = frozenset({
    b"sec-websocket-key", b"sec-websocket-accept", b"authorization", b"proxy-authorization",
    b"cookie", b"set-cookie", b"date",
})
# Common start lines -> (status, reason): parsed once.
_STATUS_LINES: dict[bytes, tuple[int, str]] = {b"HTTP/1.1 101 Switching Protocols": (101, "Switching Protocols")}


def _remember(line: bytes, name: bytes, item: tuple[str, str]) -> None:
    if len(line) <= _LINE_CACHE_MAX_LINE and name.lower() not in _UNCACHED_NAMES:
        if len(_LINE_CACHE) >= _LINE_CACHE_SIZE:
            _LINE_CACHE.clear()
        _LINE_CACHE[line] = item


@dataclass(frozen=True)
class HTTPLimits:
    """Size limits applied while parsing an HTTP head (and a response body).

    Attributes:
        max_line: longest request/status line or header line, in bytes,
            excluding the CRLF (default 8192).
        max_headers: most header lines (default 128).
        max_header_bytes: largest head (start line + header lines + CRLFs),
            in bytes (default 65536).
        max_body: largest response body kept; longer bodies are truncated
            (default 65536).

    Raises:
        ConfigError: if a limit is not a positive ``int``.
    """

    max_line: int = 8192
    max_headers: int = 128
    max_header_bytes: int = 65536
    max_body: int = 65536

    def __post_init__(self) -> None:
        for name in ("max_line", "max_headers", "max_header_bytes", "max_body"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ConfigError(f"HTTPLimits.{name} must be a positive int, got {value!r}")


_DEFAULT_LIMITS = HTTPLimits()

# Parser phases.
_START, _HEADERS, _BODY_LENGTH, _BODY_EOF, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _DONE = range(9)


class _Parser:
    """Shared machinery: a bytearray buffer read line by line with an offset."""

    __slots__ = (
        "_buf",
        "_error",
        "_head_size",
        "_items",
        "_limits",
        "_lineno",
        "_phase",
        "_pos",
        "_scan",
    )

    _what = "request"  # names the start line in messages
    _kind = "request"

    def __init__(self, limits: HTTPLimits = _DEFAULT_LIMITS) -> None:
        if not isinstance(limits, HTTPLimits):
            raise TypeError(f"limits must be an HTTPLimits, got {type(limits).__name__}")
        self._limits = limits
        self._buf = bytearray()
        self._pos = 0  # start of unconsumed data
        self._scan = 0  # where to resume looking for LF
        self._phase = _START
        self._head_size = 0  # bytes of the head consumed so far
        self._lineno = 0  # header line number (1 = first line after the start line)
        self._items: list[tuple[str, str]] = []
        self._error: InvalidHandshake | None = None

    # Errors

    def _fail(self, message: str, status: int = 400) -> NoReturn:
        exc = InvalidHandshake(message, status=status)
        self._error = exc
        raise exc

    def _where(self) -> str:
        phase = self._phase
        if phase == _START:
            return f"{self._what} line"
        if phase == _CHUNK_SIZE:
            return "chunk size line"
        if phase == _TRAILERS:
            return f"trailer line {self._lineno + 1}"
        return f"header line {self._lineno + 1}"

    # Lines

    def _next_line(self, in_head: bool = True) -> bytes | None:
        """Return the next complete line without its CRLF, or None if incomplete."""
        buf = self._buf
        limits = self._limits
        lf = buf.find(b"\n", self._scan)
        if lf < 0:
            pending = len(buf) - self._pos
            # The line (plus possibly its CR) is already too long: fail now.
            if pending > limits.max_line + 1 or (pending == limits.max_line + 1 and buf[-1] != 0x0D):
                self._fail(f"{self._where()}: line longer than {limits.max_line} bytes", 431)
            if in_head and self._head_size + pending > limits.max_header_bytes:
                self._fail(f"{self._kind} head larger than {limits.max_header_bytes} bytes", 431)
            self._scan = len(buf)
            return None
        start = self._pos
        size = lf + 1 - start
        self._pos = self._scan = lf + 1
        if lf == start or buf[lf - 1] != 0x0D:
            # RFC 7230 §3.5: we require CRLF; a bare LF is an error.
            self._fail(f"{self._where()}: line ends with a bare LF instead of CRLF")
        line = bytes(buf[start : lf - 1])
        if len(line) > limits.max_line:
            self._fail(f"{self._where()}: line longer than {limits.max_line} bytes", 431)
        if in_head:
            self._head_size += size
            if self._head_size > limits.max_header_bytes:
                self._fail(f"{self._kind} head larger than {limits.max_header_bytes} bytes", 431)
        if b"\r" in line:
            # RFC 7230 §3.5: a bare CR is an error.
            self._fail(f"{self._where()}: bare CR in line: {line!r}")
        return line

    def _header_line(self, line: bytes) -> None:
        """Parse one ``name: value`` line into ``self._items``."""
        where = self._where()
        if len(self._items) >= self._limits.max_headers:
            self._fail(f"more than {self._limits.max_headers} header lines", 431)
        if line[:1] in (b" ", b"\t"):
            # RFC 7230 §3.2.4: obs-fold MUST be rejected (400) by a server.
            self._fail(f"{where}: obs-fold (continuation line) is not allowed: {line!r}")
        colon = line.find(b":")
        if colon < 0:
            self._fail(f"{where}: missing colon: {line!r}")
        name = line[:colon]
        if not name:
            self._fail(f"{where}: empty header name: {line!r}")
        if name[-1:] in (b" ", b"\t"):
            # RFC 7230 §3.2.4: no whitespace between field-name and colon.
            self._fail(f"{where}: whitespace before colon: {line!r}")
        if _TOKEN_B.fullmatch(name) is None:
            self._fail(f"{where}: invalid header name {name!r}")
        value = line[colon + 1 :].strip(b" \t")
        ctl = _CTL_B.search(value)
        if ctl is not None:
            self._fail(f"{where}: control character {ctl.group()!r} in value of {name.decode()}: {value!r}")
        self._items.append((name.decode("ascii"), value.decode("latin-1")))

    def _start_line(self, line: bytes) -> None:
        """Parse the request line or the status line (each parser defines it)."""

    def _fast_head(self, data: bytes) -> bool:
        """Parse a head that arrived whole in the first chunk; False to use the slow path.

        The slow path (line by line) gives the same result and is the one
        that explains errors; this only handles the common, valid case faster.
        On success the bytes after the head are in the buffer.
        """
        limits = self._limits
        end = data.find(b"\r\n\r\n")
        if end < 0 or end + 4 > limits.max_header_bytes:
            return False
        lines = data[:end].split(b"\r\n")
        crlf = len(lines) - 1
        if crlf > limits.max_headers:
            return False
        max_line = limits.max_line
        first = lines[0]
        # A bare CR or LF gets the slow path's precise error. Header lines
        # cannot hold one: they match _HEADER_FAST_B (or did, when cached).
        if len(first) > max_line or b"\r" in first or b"\n" in first:
            return False
        items = []
        cache = _LINE_CACHE
        check_cached = max_line < _LINE_CACHE_MAX_LINE
        for line in lines[1:]:
            item = cache.get(line)
            if item is None:
                m = _HEADER_FAST_B.fullmatch(line)
                if m is None or len(line) > max_line:
                    return False
                item = (m[1].decode("ascii"), m[2].decode("latin-1"))
                _remember(line, m[1], item)
            elif check_cached and len(line) > max_line:
                return False
            items.append(item)
        self._start_line(first)
        self._items = items
        rest = data[end + 4 :]
        if rest:
            self._buf += rest
        self._head_size = end + 4
        self._lineno = crlf
        self._phase = _HEADERS
        return True

    def _compact(self) -> None:
        pos = self._pos
        if pos:
            del self._buf[:pos]
            self._pos = 0
            self._scan -= pos

    def _check_error(self) -> None:
        if self._error is not None:
            raise self._error

    def leftover(self) -> bytes:
        """Return the bytes received after the parsed message (WebSocket frames).

        Only meaningful once ``feed`` returned the message; data fed after
        that is appended here.
        """
        if self._phase != _DONE:
            return b""
        return bytes(self._buf[self._pos :])


class RequestParser(_Parser):
    """Parse an HTTP/1.1 request head incrementally (server side).

    Args:
        limits: size limits (default :class:`HTTPLimits()`).

    Example:
        >>> parser = RequestParser()
        >>> parser.feed(b"GET /chat HTTP/1.1\\r\\nHost: a\\r\\n")  # None: incomplete
        >>> request = parser.feed(b"\\r\\n\\x81\\x00")
        >>> request.path, parser.leftover()
        ('/chat', b'\\x81\\x00')

    A request with a body (``Content-Length`` > 0 or ``Transfer-Encoding``)
    is refused with 400: an upgrade request has none. Errors raise
    :class:`~wskit.exceptions.InvalidHandshake` whose ``status`` is the HTTP
    status to answer with (see the module docstring). After an error the
    parser keeps raising it.
    """

    __slots__ = ("_method", "_request", "_target")

    _what = "request"

    def __init__(self, limits: HTTPLimits = _DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._method = ""
        self._target = ""
        self._request: Request | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> Request | None:
        """Add received bytes.

        Returns:
            The :class:`~wskit.events.Request` the first time the head is
            complete, else ``None`` (also on later calls: extra data goes to
            :meth:`leftover`).

        Raises:
            InvalidHandshake: the request is malformed or exceeds the limits;
                ``status`` is 400, 431 or 505.
        """
        self._check_error()
        if self._phase == _START and not self._buf:
            if type(data) is not bytes:
                data = bytes(data)
            if self._fast_head(data):
                return self._finish()
        self._buf += data
        if self._phase == _DONE:
            return None
        while True:
            line = self._next_line()
            if line is None:
                if self._phase == _START:
                    self._check_method_start()
                self._compact()
                return None
            if self._phase == _START:
                self._start_line(line)
                self._phase = _HEADERS
            elif line:
                self._header_line(line)
                self._lineno += 1
            else:
                return self._finish()

    def _check_method_start(self) -> None:
        # RFC 7230 §3.1.1: a request line starts with a method token; bytes
        # that cannot (a WebSocket frame, TLS) fail now, not at the first LF.
        buf = self._buf
        pos = self._pos
        if pos < len(buf) and buf[pos] not in _TCHARS and buf[pos] not in b"\r\n":  # CR, LF: line errors
            start = bytes(buf[pos : pos + 32])
            self._fail(f"request line: expected 'METHOD TARGET HTTP/1.1', got {start!r}: not an HTTP request")

    def feed_eof(self) -> None:
        """Signal the end of the stream.

        Raises:
            InvalidHandshake: if the request head was not complete.
        """
        self._check_error()
        if self._phase != _DONE:
            self._fail("connection closed before the request head was complete")

    def _start_line(self, line: bytes) -> None:
        if line[:4] == b"GET " and line[-9:] == b" HTTP/1.1":
            target = line[4:-9]
            if _TARGET_B.fullmatch(target) is not None:
                self._method = "GET"
                self._target = target.decode("ascii")
                return
        # RFC 7230 §3.1.1: request-line = method SP request-target SP HTTP-version
        parts = line.split(b" ")
        if len(parts) != 3:
            self._fail(f"request line: expected 'METHOD TARGET HTTP/1.1', got {line!r}")
        method, target, version = parts
        if _TOKEN_B.fullmatch(method) is None:
            self._fail(f"request line: invalid method {method!r}")
        if _TARGET_B.fullmatch(target) is None:
            self._fail(f"request line: invalid request target {target!r}")
        if version != b"HTTP/1.1":
            if _VERSION_B.fullmatch(version) is None:
                self._fail(f"request line: invalid HTTP version {version!r}")
            # RFC 6455 §4.1: the handshake MUST be HTTP/1.1 or higher.
            self._fail(f"request line: unsupported HTTP version {version.decode()}, expected HTTP/1.1", 505)
        self._method = method.decode("ascii")
        self._target = target.decode("ascii")

    def _finish(self) -> Request:
        headers = Headers._trusted(self._items)
        index = headers._lookup()
        if "transfer-encoding" in index:
            self._fail("request has a body (Transfer-Encoding); an upgrade request must not")
        lengths = headers.get_all("Content-Length") if "content-length" in index else None
        if lengths and any(value.strip() not in ("0", "") for value in ",".join(lengths).split(",")):
            self._fail(f"request has a body (Content-Length: {', '.join(lengths)}); an upgrade request must not")
        self._phase = _DONE
        self._request = Request(self._target, headers, self._method)
        return self._request


class ResponseParser(_Parser):
    """Parse an HTTP/1.1 response incrementally (client side).

    Args:
        limits: size limits (default :class:`HTTPLimits()`).

    A ``101`` response ends at the blank line; :meth:`leftover` then holds
    the bytes that followed (WebSocket frames). Other responses carry a body,
    read according to RFC 7230 §3.3.3: ``Transfer-Encoding: chunked`` is
    decoded, ``Content-Length`` is honoured, otherwise the body runs until
    :meth:`feed_eof`. Bodies are truncated to ``limits.max_body`` bytes; the
    response is returned as soon as that many body bytes arrived.

    Errors raise :class:`~wskit.exceptions.InvalidHandshake` (its ``status``
    is meaningless on the client).
    """

    __slots__ = ("_body", "_chunked", "_headers", "_reason", "_remaining", "_response", "_status")

    _what = "status"
    _kind = "response"

    def __init__(self, limits: HTTPLimits = _DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._status = 0
        self._reason = ""
        self._headers: Headers | None = None
        self._body = bytearray()
        self._remaining = 0
        self._chunked = False
        self._response: Response | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> Response | None:
        """Add received bytes.

        Returns:
            The :class:`~wskit.events.Response` the first time it is complete,
            else ``None``.

        Raises:
            InvalidHandshake: the response is malformed or exceeds the limits.
        """
        self._check_error()
        if self._phase == _START and not self._buf:
            if type(data) is not bytes:
                data = bytes(data)
            if self._fast_head(data):
                response = self._end_of_head()
                if response is not None:
                    return response
                data = b""
        self._buf += data
        if self._phase == _DONE:
            return None
        response = self._run()
        if response is None:
            self._compact()
        return response

    def feed_eof(self) -> Response | None:
        """Signal the end of the stream.

        Returns:
            The :class:`~wskit.events.Response` if the end of the stream
            completes it (a body without ``Content-Length`` or chunked
            encoding); ``None`` if it was already returned by :meth:`feed`.

        Raises:
            InvalidHandshake: the stream ended before the response was
                complete. When the head was complete, ``exc.response`` holds
                the response with the partial body.
        """
        self._check_error()
        phase = self._phase
        if phase == _DONE:
            return None
        if phase == _BODY_EOF:
            return self._finish()
        if phase in (_START, _HEADERS):
            if phase == _START and self._pos == len(self._buf):
                self._fail("connection closed before any response was received")
            self._fail("connection closed before the response head was complete")
        assert self._headers is not None
        partial = Response(self._status, self._reason, self._headers, bytes(self._body))
        exc = InvalidHandshake(
            f"connection closed before the response body was complete ({len(self._body)} bytes received)",
            response=partial,
        )
        self._error = exc
        raise exc

    def _finish(self) -> Response:
        assert self._headers is not None
        self._phase = _DONE
        self._response = Response(self._status, self._reason, self._headers, bytes(self._body))
        return self._response

    def _take(self, count: int) -> int:
        """Move up to ``count`` buffered bytes to the body; return how many."""
        buf = self._buf
        pos = self._pos
        taken = min(count, len(buf) - pos)
        if taken:
            self._body += buf[pos : pos + taken]
            self._pos = self._scan = pos + taken
        return taken

    def _run(self) -> Response | None:
        max_body = self._limits.max_body
        while True:
            phase = self._phase
            if phase == _START or phase == _HEADERS or phase == _TRAILERS:
                line = self._next_line(in_head=phase != _TRAILERS)
                if line is None:
                    return None
                if phase == _START:
                    self._start_line(line)
                    self._phase = _HEADERS
                elif phase == _TRAILERS:
                    if not line:
                        return self._finish()
                    # Trailer fields are discarded, but counted against max_headers.
                    self._lineno += 1
                    if self._lineno > self._limits.max_headers:
                        self._fail(f"more than {self._limits.max_headers} trailer lines")
                elif line:
                    self._header_line(line)
                    self._lineno += 1
                else:
                    response = self._end_of_head()
                    if response is not None:
                        return response
            elif phase == _BODY_LENGTH:
                self._remaining -= self._take(self._remaining)
                if self._remaining == 0:
                    return self._finish()
                return None
            elif phase == _BODY_EOF:
                self._take(max_body - len(self._body))
                if len(self._body) >= max_body:
                    return self._finish()
                return None
            elif phase == _CHUNK_SIZE:
                line = self._next_line(in_head=False)
                if line is None:
                    return None
                # RFC 7230 §4.1: chunk-size [ chunk-ext ] CRLF
                match = _CHUNK_SIZE_B.fullmatch(line)
                if match is None:
                    self._fail(f"invalid chunk size line: {line!r}")
                size = int(match.group(1), 16)
                if size == 0:
                    self._lineno = 0
                    self._phase = _TRAILERS
                else:
                    self._remaining = size
                    self._phase = _CHUNK_DATA
            elif phase == _CHUNK_DATA:
                room = max_body - len(self._body)
                self._remaining -= self._take(min(self._remaining, room))
                if len(self._body) >= max_body:
                    return self._finish()
                if self._remaining:
                    return None
                self._phase = _CHUNK_CRLF
            else:  # _CHUNK_CRLF (_DONE returns before entering the loop)
                available = len(self._buf) - self._pos
                if available < 2:
                    if available == 1 and self._buf[self._pos] != 0x0D:
                        self._fail("chunk data not followed by CRLF")
                    return None
                if self._buf[self._pos : self._pos + 2] != b"\r\n":
                    self._fail("chunk data not followed by CRLF")
                self._pos = self._scan = self._pos + 2
                self._phase = _CHUNK_SIZE

    def _start_line(self, line: bytes) -> None:
        known = _STATUS_LINES.get(line)
        if known is not None:
            self._status, self._reason = known
            return
        # RFC 7230 §3.1.2: status-line = HTTP-version SP status-code SP reason-phrase
        parts = line.split(b" ", 2)
        if len(parts) < 2:
            self._fail(f"status line: expected 'HTTP/1.1 CODE REASON', got {line!r}")
        version, code = parts[0], parts[1]
        reason = parts[2] if len(parts) == 3 else b""
        if _VERSION_B.fullmatch(version) is None:
            self._fail(f"status line: invalid HTTP version {version!r}")
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            self._fail(f"status line: unsupported HTTP version {version.decode()}, expected HTTP/1.1")
        if _STATUS_B.fullmatch(code) is None or not 100 <= int(code) <= 999:
            self._fail(f"status line: invalid status code {code!r}")
        if _CTL_B.search(reason) is not None:
            self._fail(f"status line: control character in reason phrase {reason!r}")
        self._status = int(code)
        if self._status == 101 and version != b"HTTP/1.1":
            # RFC 6455 §4.1: the handshake is HTTP/1.1.
            self._fail(f"status line: 101 Switching Protocols over {version.decode()}")
        self._reason = reason.decode("latin-1")

    def _end_of_head(self) -> Response | None:
        headers = self._headers = Headers._trusted(self._items)
        status = self._status
        # RFC 7230 §3.3.3 (1): 1xx, 204 and 304 responses end at the blank line.
        if status < 200 or status in _NO_BODY:
            return self._finish()
        # RFC 7230 §3.3.3 (3): Transfer-Encoding wins over Content-Length.
        encodings = headers.get_all("Transfer-Encoding")
        if encodings:
            codings = parse_token_list(encodings, "Transfer-Encoding")
            if codings and codings[-1].lower() == "chunked":
                self._chunked = True
                self._phase = _CHUNK_SIZE
            else:
                self._phase = _BODY_EOF
            return None
        lengths = headers.get_all("Content-Length")
        if lengths:
            # RFC 7230 §3.3.2: identical repeated values are allowed.
            values = {value.strip() for value in ",".join(lengths).split(",")}
            if len(values) != 1:
                self._fail(f"conflicting Content-Length values: {', '.join(lengths)}")
            value = values.pop()
            if not value.isascii() or not value.isdigit() or len(value) > 18:
                self._fail(f"invalid Content-Length: {value!r}")
            self._remaining = min(int(value), self._limits.max_body)
            self._phase = _BODY_LENGTH
            return None
        self._phase = _BODY_EOF
        return None


# Serialization -----------------------------------------------------------------


def serialize_request(method: str, target: str, headers: Headers) -> bytes:
    """Serialize an HTTP/1.1 request head.

    Args:
        method: a token, e.g. ``"GET"``.
        target: the request target (``"/chat?room=1"``), printable ASCII.
        headers: the header lines, in order.

    Raises:
        ValueError: if the method or target is invalid.
    """
    if method != "GET" and not is_token(method):
        raise ValueError(f"invalid HTTP method {method!r}")
    if _TARGET_S.fullmatch(target) is None:
        raise ValueError(f"invalid request target {target!r}: printable ASCII without spaces only")
    return f"{method} {target} HTTP/1.1\r\n".encode("ascii") + headers.serialize()


_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}
_BAD_REASON = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")


def serialize_response(status: int, reason: str | None, headers: Headers, body: bytes = b"") -> bytes:
    """Serialize an HTTP/1.1 response.

    Args:
        status: the status code (100-999).
        reason: the reason phrase; ``None`` uses the standard phrase from
            :class:`http.HTTPStatus` (empty for an unknown code).
        headers: the header lines. They are not modified: when the response
            may have a body (not 1xx, 204, 304) and neither
            ``Content-Length`` nor ``Transfer-Encoding`` is present,
            ``Content-Length`` is added to the serialized output.
        body: the body.

    Raises:
        ValueError: if the status or reason is invalid.
    """
    if not isinstance(status, int) or not 100 <= status <= 999:
        raise ValueError(f"invalid HTTP status code {status!r}")
    if reason is None:
        reason = _PHRASES.get(status, "")
    elif _BAD_REASON.search(reason):
        raise ValueError(f"invalid reason phrase {reason!r}")
    has_body = status >= 200 and status not in _NO_BODY
    if has_body and "Content-Length" not in headers and "Transfer-Encoding" not in headers:
        headers = headers.copy()
        headers["Content-Length"] = str(len(body))
    elif body and not has_body:
        raise ValueError(f"a {status} response cannot have a body")
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1") + headers.serialize() + bytes(body)


def build_error_response(status: int, message: str, headers: HeadersLike | None = None) -> bytes:
    """Build a short ``text/plain`` error response for rejecting a handshake.

    Args:
        status: the HTTP status, e.g. 400, 403, 426.
        message: the body text (a newline is appended), UTF-8 encoded.
        headers: extra headers, e.g. ``InvalidHandshake.headers`` (``[("Sec-WebSocket-Version", "13")]``).
            When they include ``Upgrade`` (as a 426 must, RFC 7231 §6.5.15),
            ``Connection`` is ``Upgrade, close`` (RFC 7230 §6.7).

    Returns:
        The serialized response, with ``Connection: close``,
        ``Content-Type: text/plain; charset=utf-8`` and ``Content-Length``.
    """
    extra = headers if isinstance(headers, Headers) else Headers(headers)
    body = (message + "\n").encode("utf-8")
    out = Headers()
    out["Connection"] = "Upgrade, close" if "Upgrade" in extra else "close"
    out["Content-Type"] = "text/plain; charset=utf-8"
    out["Content-Length"] = str(len(body))
    for name, value in extra:
        if name.lower() not in ("connection", "content-length", "content-type"):
            out[name] = value
    return serialize_response(status, None, out, body)


