"""Fuzz targets: each feeds arbitrary input to one parser and checks its contract.

A target takes the input (bytes, or text for the configuration loader) and
the sizes of the chunks to feed it in (any chunking must give the same
outcome); it returns normally when the parser accepted the input or refused
it the documented way, and raises ``AssertionError`` (or lets an unexpected
exception through) when the contract is broken. The hypothesis tests in this
directory and the atheris driver (``fuzz_atheris.py``) call the same targets.

The contracts:

* HTTP/1.1 parsers (:mod:`wskit.http11`): a request, a response, ``None``
  (incomplete), or :class:`~wskit.exceptions.InvalidHandshake` with an HTTP
  error status; the server and client protocols in the handshake: the same,
  and a server's ``InvalidHandshake`` carries the HTTP response to send.
* Frames (:class:`wskit.frames.FrameReader` through
  :meth:`wskit.Protocol.receive_data`, either side): events, or a
  :class:`~wskit.exceptions.ProtocolError` whose close code is one a peer's
  data can cause (1002, 1007, 1009), whose ``to_send`` is our Close frame
  with that code, and after which nothing more is read.
* permessage-deflate decoding: the same, with compression negotiated.
* Configuration (:func:`wskit.config.loads`): a ``Config``, or
  :class:`~wskit.exceptions.ConfigError` whose every line starts with
  ``SOURCE:LINE:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from wskit import ClientProtocol, Protocol, ServerProtocol, Side, State
from wskit import frames as frames_module
from wskit.config import loads
from wskit.events import BinaryMessage, Close, ConnectionClosed, Event, Ping, Pong, Request, Response, TextMessage
from wskit.exceptions import ConfigError, InvalidHandshake, ProtocolError
from wskit.frames import FrameReader, Opcode, parse_close
from wskit.http11 import HTTPLimits, RequestParser, ResponseParser

__all__ = [
    "chunked",
    "check_request_parser",
    "check_response_parser",
    "check_server_handshake",
    "check_client_handshake",
    "check_frames",
    "check_deflate",
    "check_config",
    "SOURCE",
]

#: The source name configuration errors must start with.
SOURCE = "fuzz.yaml"
_CONFIG_LINE = re.compile(re.escape(SOURCE) + r":\d+: ")
# Close codes a peer's bytes can make us send (RFC 6455 §7.4.1).
_PEER_CODES = frozenset({1002, 1007, 1009})
_DATA_EVENTS = (TextMessage, BinaryMessage, Ping, Pong, Close)
_SMALL_LIMITS = HTTPLimits(max_line=256, max_headers=16, max_header_bytes=2048, max_body=512)


def chunked(data: bytes, sizes: Sequence[int]) -> Iterator[bytes]:
    """Split ``data`` into chunks of the given sizes (cycled; 0 counts as 1), the rest in one."""
    pos = 0
    i = 0
    while pos < len(data):
        if sizes and i < 4096:
            size = max(1, sizes[i % len(sizes)])
            i += 1
        else:
            size = len(data) - pos
        yield data[pos:pos + size]
        pos += size


# -- HTTP/1.1 --------------------------------------------------------------------------


def _check_http_error(exc: InvalidHandshake) -> None:
    assert str(exc), "an InvalidHandshake without a message"
    assert isinstance(exc.status, int) and 400 <= exc.status <= 599, exc.status


def check_request_parser(data: bytes, sizes: Sequence[int], small: bool = False) -> Request | None:
    """Feed ``data`` to a :class:`RequestParser`; a refusal is ``InvalidHandshake`` with a 4xx/5xx status."""
    parser = RequestParser(_SMALL_LIMITS if small else HTTPLimits())
    result: Request | None = None
    fed = b""
    try:
        for chunk in chunked(data, sizes):
            fed += chunk
            result = parser.feed(chunk)
            if result is not None:
                break
        if result is None:
            parser.feed_eof()
    except InvalidHandshake as exc:
        _check_http_error(exc)
        # The parser keeps refusing after an error.
        try:
            parser.feed(b"GET / HTTP/1.1\r\n\r\n")
        except InvalidHandshake as again:
            assert again.status == exc.status
        else:  # pragma: no cover - a contract violation
            raise AssertionError("the parser accepted more input after an error") from exc
        return None
    if result is not None:
        assert isinstance(result, Request)
        assert result.path, "a request without a target"
        # What follows the head's blank line is kept, byte for byte.
        leftover = parser.leftover()
        assert fed.endswith(leftover) and fed[:len(fed) - len(leftover)].endswith(b"\r\n\r\n")
    return result


def check_response_parser(data: bytes, sizes: Sequence[int], small: bool = False) -> Response | None:
    """Feed ``data`` to a :class:`ResponseParser`, then EOF; a refusal is ``InvalidHandshake``."""
    parser = ResponseParser(_SMALL_LIMITS if small else HTTPLimits())
    result: Response | None = None
    try:
        for chunk in chunked(data, sizes):
            result = parser.feed(chunk)
            if result is not None:
                break
        if result is None:
            result = parser.feed_eof()
    except InvalidHandshake as exc:
        assert str(exc)
        return None
    if result is not None:
        assert isinstance(result, Response)
        assert 100 <= result.status_code <= 999
        limit = (_SMALL_LIMITS if small else HTTPLimits()).max_body
        assert len(result.body or b"") <= limit
    return result


def check_server_handshake(data: bytes, sizes: Sequence[int]) -> None:
    """A server receiving ``data``: a request, or a refusal carrying the HTTP response to send."""
    server = ServerProtocol()
    events: list[Event] = []
    try:
        for chunk in chunked(data, sizes):
            events += server.receive_data(chunk)
            if events:
                break
    except InvalidHandshake as exc:
        _check_http_error(exc)
        assert exc.to_send and exc.to_send[0].startswith(b"HTTP/1.1 "), exc.to_send
        assert exc.to_send[0].startswith(f"HTTP/1.1 {exc.status} ".encode()), (exc.status, exc.to_send[0][:40])
        assert server.state is State.CLOSED
        return
    if events:
        assert isinstance(events[0], Request)
        try:
            out = server.accept(events[0])
        except InvalidHandshake as exc:
            _check_http_error(exc)
            assert exc.to_send
            return
        assert b"".join(out).startswith(b"HTTP/1.1 ")


def check_client_handshake(data: bytes, sizes: Sequence[int]) -> None:
    """A client receiving ``data`` as the server's answer: OPEN, waiting, or ``InvalidHandshake``."""
    client = ClientProtocol("ws://example.com/chat", extensions=[])
    client.connect()
    try:
        for chunk in chunked(data, sizes):
            client.receive_data(chunk)
            if client.state is not State.CONNECTING:
                break
        client.receive_eof()
    except InvalidHandshake as exc:
        assert str(exc)
        assert client.state is State.CLOSED
    except ProtocolError as exc:
        # Frames after a successful 101 are the data path's.
        assert exc.close_code in _PEER_CODES, exc.close_code


# -- frames and permessage-deflate ------------------------------------------------------


def _check_data_path(protocol: Protocol, data: bytes, sizes: Sequence[int]) -> list[Event]:
    events: list[Event] = []
    masked = protocol.side is Side.CLIENT  # our Close is masked on a client
    for chunk in chunked(data, sizes):
        try:
            events += protocol.receive_data(chunk)
        except ProtocolError as exc:
            assert type(exc).__name__ in {"ProtocolError", "PayloadTooBig"}, type(exc)
            assert exc.close_code in _PEER_CODES, (exc.close_code, str(exc))
            assert str(exc)
            assert protocol.close_code == exc.close_code
            assert protocol.state is State.CLOSING
            events += exc.events
            assert len(exc.to_send) == 1
            code, _ = _read_close(exc.to_send[0], masked)
            assert code == exc.close_code
            # Nothing more is read.
            assert protocol.receive_data(chunk + b"\x81\x00") == []
            break
        if protocol.state is State.CLOSING and protocol.close_received:
            break
    for event in events:
        assert isinstance(event, _DATA_EVENTS), event
        if isinstance(event, (TextMessage, BinaryMessage)) and protocol.max_size is not None:
            assert len(event.data) <= protocol.max_size
    closed = protocol.receive_eof()
    assert len(closed) == 1 and isinstance(closed[0], ConnectionClosed)
    return events


def _read_close(frame: bytes, masked: bool) -> tuple[int, str]:
    reader = FrameReader(masked, None)  # our Close is masked on a client
    frames, error = reader.read(frame)
    assert error is None and len(frames) == 1 and frames[0].opcode is Opcode.CLOSE
    return parse_close(frames[0].data)


def check_frames(data: bytes, sizes: Sequence[int], side: Side = Side.SERVER, max_size: int | None = 2**20,
                 max_frames: int | None = None) -> list[Event]:
    """Feed ``data`` to a bare :class:`Protocol` of ``side``; check events or the failure contract."""
    protocol = Protocol(side, max_size=max_size)
    if max_frames is not None:
        protocol._reader.max_frames = max_frames  # small, to reach the limit with short inputs
    return _check_data_path(protocol, data, sizes)


# Gathering thresholds small enough for fuzzed frames: frames of 2 to 8
# bytes are gathered in the kept buffer, of 9 to 64 in their own bytes
# object (with the C accelerator), longer ones in the receive buffer.
_TINY_GATHER = {"GATHER_MIN": 2, "GATHER_KEEP": 8, "GATHER_MAX": 64}


def _feed_offered(protocol: Protocol, chunks: Iterator[bytes]) -> tuple[list[Event], int | None]:
    """Feed chunks as a transport reading into the offered buffer when there is one; events and failure code."""
    events: list[Event] = []
    try:
        for chunk in chunks:
            while chunk:
                view = protocol.receive_buffer()
                if view is None:
                    events += protocol.receive_data(chunk)
                    break
                n = min(len(view), len(chunk))
                view[:n] = chunk[:n]
                del view
                events += protocol.receive_into(n)
                chunk = chunk[n:]
    except ProtocolError as exc:
        return events + exc.events, exc.close_code
    return events, None


def check_frames_gathered(data: bytes, sizes: Sequence[int], side: Side = Side.SERVER,
                          max_size: int | None = 2**20) -> list[Event]:
    """Gathering a frame, in any of its ways, changes none of the events or failures of a read.

    The same chunks are read twice: once as they are (fuzzed frames are far
    below the gathering thresholds), once with the thresholds made tiny
    (``_TINY_GATHER``), so that fuzzed frames take each gathering path, and
    read into the offered buffer whenever there is one (``receive_buffer``
    / ``receive_into``).
    """
    expected = _feed_offered(Protocol(side, max_size=max_size), chunked(data, sizes))
    saved = {name: getattr(frames_module, name) for name in _TINY_GATHER}
    try:
        for name, value in _TINY_GATHER.items():
            setattr(frames_module, name, value)
        got = _feed_offered(Protocol(side, max_size=max_size), chunked(data, sizes))
    finally:
        for name, value in saved.items():
            setattr(frames_module, name, value)
    assert got == expected
    return got[0]


def deflate_server(max_size: int | None = 2**20, no_context_takeover: bool = False,
                   window_bits: int | None = None) -> Protocol:
    """A server :class:`Protocol` with permessage-deflate negotiated (as a client offers it)."""
    from wskit.extensions.permessage_deflate import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory

    client_factory = ClientPerMessageDeflateFactory(client_no_context_takeover=no_context_takeover,
                                                    client_max_window_bits=window_bits)
    server_factory = ServerPerMessageDeflateFactory()
    _, server_ext = server_factory.process_request_params(client_factory.get_request_params(), [])
    return Protocol(Side.SERVER, extensions=[server_ext], max_size=max_size)


def check_deflate(data: bytes, sizes: Sequence[int], max_size: int | None = 2**20,
                  no_context_takeover: bool = False, window_bits: int | None = None) -> list[Event]:
    """Feed client frames to a server with permessage-deflate; check events or the failure contract."""
    return _check_data_path(deflate_server(max_size, no_context_takeover, window_bits), data, sizes)


# -- configuration ------------------------------------------------------------------------


def check_config(text: str) -> None:
    """Load ``text`` as a configuration; a refusal is ``ConfigError`` with ``SOURCE:LINE:`` on every line."""
    try:
        loads(text, SOURCE)
    except ConfigError as exc:
        assert exc.errors, "a ConfigError without errors"
        for line in exc.errors:
            assert _CONFIG_LINE.match(line), line
