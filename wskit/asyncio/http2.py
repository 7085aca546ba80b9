"""WebSockets over HTTP/2 (RFC 8441) for asyncio: :func:`connect` and :func:`serve`.

One TCP+TLS connection carries an HTTP/2 connection (framing, HPACK and
flow control are the ``h2`` package's); each WebSocket is one of its
streams, opened by an extended CONNECT (:mod:`wskit.http2`, sans-I/O).

The stream is given to the usual asyncio connection as its transport: a
:class:`StreamTransport` is an :class:`asyncio.Transport` whose ``write``
sends DATA frames, whose ``close`` ends the stream (END_STREAM, the TCP
FIN of RFC 6455) and whose ``abort`` resets it (RST_STREAM CANCEL). So a
WebSocket over HTTP/2 is a :class:`~wskit.asyncio.ClientConnection` or a
:class:`~wskit.asyncio.ServerConnection` like any other: the same
``recv``/``send`` API, keepalive, close handshake (every decision of it
stays in :class:`wskit.duties.Duties`) and backpressure:

* receiving: when ``max_queue`` messages wait, the connection pauses
  reading; the stream then stops acknowledging DATA, so no WINDOW_UPDATE
  goes out and the peer stops sending on that stream once its window
  (``stream_window`` bytes) is used up. The other streams go on;
* sending: DATA goes out as the peer's flow-control windows allow; what
  waits counts towards ``write_limit``, above which ``send`` waits. When the
  TCP connection itself is paused, no stream adds to it.

Servers answer both HTTP/1.1 upgrades and HTTP/2 on the same port: TLS ALPN
chooses. HTTP/2 without TLS (h2c) is not supported: browsers only speak
HTTP/2 over TLS.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
    import h2.settings
    from h2.errors import ErrorCodes
except ImportError as exc:  # h2 is an optional dependency
    raise ImportError("WebSockets over HTTP/2 need the h2 package: pip install 'wskit[http2]'") from exc

from ..events import Request, Response
from ..exceptions import ConnectionClosedError, InvalidHandshake
from ..frames import CloseCode
from ..handshake import parse_uri
from ..headers import Headers
from ..http2 import CONNECTION_SPECIFIC, H2ClientProtocol, H2Header, H2ServerProtocol, error_response
from ..protocol import State
from . import client as client_module
from . import server as server_module
from .connection import Connection, make_logger

if TYPE_CHECKING:
    pass

__all__ = ["H2ClientConnection", "H2ServerConnection", "StreamTransport", "connect", "serve",
           "MAX_STREAMS", "STREAM_WINDOW"]

MAX_STREAMS = 100
"""Default SETTINGS_MAX_CONCURRENT_STREAMS a server announces: WebSockets at once on one HTTP/2 connection."""

STREAM_WINDOW = 256 * 1024
"""Default receive window of each stream, in bytes: what a peer may send on a stream that is not read."""

_HIGHEST_ID = 2**31 - 1

_FLUSH_AT = 65536  # DATA bytes given to h2 in one callback, at which they are written at once

_Received = tuple[bytes | str, bytes | str]  # a header as h2 hands it over


class _LocalSettings(h2.settings.Settings):
    """Our settings, sent as they are; ``h2`` does not refuse excess streams itself.

    ``h2`` treats a stream beyond our SETTINGS_MAX_CONCURRENT_STREAMS as a
    connection error (GOAWAY: every stream dies). RFC 9113 §5.1.2 also
    allows a stream error, REFUSED_STREAM, which the carrier sends itself
    so that the other WebSockets keep working.
    """

    # Read by h2 to check a new stream: no limit. Set as h2.settings.Settings sets it.
    max_concurrent_streams = property(lambda self: _HIGHEST_ID,
                                      vars(h2.settings.Settings)["max_concurrent_streams"].fset)


class StreamTransport(asyncio.Transport):
    """One HTTP/2 stream seen as an asyncio transport by a WebSocket connection.

    ``get_extra_info`` answers ``"stream_id"`` and ``"http_version"``
    (``"2"``), and passes other names (``peername``, ``ssl_object``, ...) to
    the TCP transport of the HTTP/2 connection.
    """

    def __init__(self, carrier: _Carrier, stream_id: int, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._carrier = carrier
        self.stream_id = stream_id
        self._protocol = protocol
        self._pending = bytearray()  # written, not yet given to h2 (flow control, TCP backpressure)
        self._high = 65536
        self._low = 16384
        self._protocol_paused = False
        self._closing = False  # close(): no more writes, nothing more delivered
        self._end_wanted = False  # END_STREAM once _pending is sent (close or write_eof)
        self.end_sent = False
        self.end_received = False
        self.answered = False  # carries an HTTP answer (a refusal, a page), not a WebSocket
        self.lost = False
        self._reading = True
        self._held: collections.deque[tuple[bytes, int]] = collections.deque()  # DATA while reading is paused
        self._eof_held = False

    # -- asyncio.Transport -------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "stream_id":
            return self.stream_id
        if name == "http_version":
            return "2"
        transport = self._carrier.transport
        return default if transport is None else transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self.lost

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def close(self) -> None:
        """End our side of the stream (END_STREAM once written data is sent); the stream
        is gone once the peer ends its side too (or resets it)."""
        if self._closing or self.lost:
            return
        self._closing = True
        self._held.clear()
        self._end_wanted = True
        self._carrier.send_pending(self)

    def write_eof(self) -> None:
        """End our side of the stream (END_STREAM once written data is sent) and keep reading."""
        if self._end_wanted or self.lost:
            return
        self._end_wanted = True
        self._carrier.send_pending(self)

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        """Reset the stream (RST_STREAM CANCEL): the peer sees it fail, as after a TCP reset."""
        if self.lost:
            return
        self._carrier.reset(self, ErrorCodes.CANCEL)
        self._lose(None)

    def write(self, data: bytes | bytearray | memoryview) -> None:  # type: ignore[override]
        if self._end_wanted or self.lost or not data:
            return
        self._pending += data
        self._carrier.send_pending(self)
        self._check_high()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:  # type: ignore[override]
        self.write(b"".join(list_of_data))

    def get_write_buffer_size(self) -> int:
        return len(self._pending)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = 65536 if high is None else high
        self._low = self._high // 4 if low is None else low
        self._check_high()

    def is_reading(self) -> bool:
        return self._reading and not self.lost

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading or self.lost:
            return
        self._reading = True
        held = self._held
        while held and self._reading and not self._closing and not self.lost:
            data, flow = held.popleft()
            self._carrier.acknowledge(self, flow)
            self._protocol.data_received(data)
        if not held and self._eof_held and self._reading:
            self._eof_held = False
            self._deliver_eof()
        self._carrier.soon()

    # -- what the carrier tells the stream --------------------------------------------

    def _check_high(self) -> None:
        if not self._protocol_paused and (len(self._pending) > self._high or self._carrier.tcp_paused):
            self._protocol_paused = True
            self._protocol.pause_writing()

    def _check_low(self) -> None:
        if self._protocol_paused and len(self._pending) <= self._low and not self._carrier.tcp_paused:
            self._protocol_paused = False
            self._protocol.resume_writing()

    def data(self, data: bytes, flow: int) -> None:
        if self._closing:  # closed by us: acknowledged, not delivered (as a closed socket drops it)
            self._carrier.acknowledge(self, flow)
        elif not self._reading or self._held:
            self._held.append((data, flow))  # at most the stream window, since nothing is acknowledged
        else:
            self._carrier.acknowledge(self, flow)
            self._protocol.data_received(data)

    def ended(self) -> None:
        self.end_received = True
        if self._closing:
            self._carrier.stream_done(self)
        elif self._held or not self._reading:
            self._eof_held = True
        else:
            self._deliver_eof()

    def _deliver_eof(self) -> None:
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()
        if self.end_sent:
            self._carrier.stream_done(self)

    def _lose(self, exc: Exception | None) -> None:
        """The stream is gone (both ends closed, reset, or the HTTP/2 connection lost)."""
        if self.lost:
            return
        self.lost = True
        self._pending.clear()
        self._held.clear()
        self._carrier.forget(self)
        self._carrier.loop.call_soon(self._protocol.connection_lost, exc)


class _Carrier(asyncio.Protocol):
    """One HTTP/2 connection on a TCP+TLS transport, carrying WebSocket streams."""

    def __init__(self, *, client_side: bool, max_streams: int, stream_window: int,
                 logger: logging.Logger | logging.LoggerAdapter) -> None:  # type: ignore[type-arg]
        self.loop = asyncio.get_running_loop()
        self.client_side = client_side
        self.logger = logger
        # A server checks requests itself (wskit.http2): a malformed one is refused on its own
        # stream (400), where h2 would end the whole connection.
        # Headers stay bytes (wskit.http2 decodes them as ISO-8859-1, as HTTP/1.1 does).
        config = h2.config.H2Configuration(client_side=client_side, header_encoding=None,
                                           validate_inbound_headers=client_side)
        self.h2 = h2.connection.H2Connection(config)
        initial = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
        }
        if client_side:
            initial[h2.settings.SettingCodes.ENABLE_PUSH] = 0
        else:
            initial[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        self.h2.local_settings = _LocalSettings(client=client_side, initial_values=initial)
        self.max_streams = max_streams
        self._connection_window = max_streams * stream_window
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, StreamTransport] = {}
        self.tcp_paused = False
        self._receiving = False  # in data_received: it writes what h2 has to send when it ends
        self._flush_handle: asyncio.Handle | None = None
        self._unflushed = 0  # DATA bytes given to h2 since the last flush
        self.going_away = False  # GOAWAY sent or received: no new stream
        self.closed = asyncio.Event()  # set once the TCP connection is closed

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.h2.initiate_connection()
        increment = self._connection_window - 65535
        if increment > 0:
            self.h2.increment_flow_control_window(min(increment, _HIGHEST_ID - 65535))
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # A connection error: h2 queued a GOAWAY with its code (and sends nothing more); every stream ends.
            self.logger.debug("! HTTP/2 protocol error: %s", exc)
            self._terminated(f"HTTP/2 protocol error: {exc}")
            return
        self._receiving = True
        try:
            for event in events:
                self._dispatch(event)
        finally:
            self._receiving = False
            self.flush()  # with what the streams answered meanwhile: one write

    def _dispatch(self, event: h2.events.Event) -> None:
        # An END_STREAM (on DATA, HEADERS or trailers) is also a StreamEnded event, after that one.
        kind = type(event)
        if kind is h2.events.DataReceived:
            ev = cast(h2.events.DataReceived, event)
            assert ev.stream_id is not None and ev.data is not None
            stream = self.streams.get(ev.stream_id)
            if stream is None:
                self.h2.acknowledge_received_data(ev.flow_controlled_length or 0, ev.stream_id)
            else:
                stream.data(ev.data, ev.flow_controlled_length or 0)
        elif kind is h2.events.WindowUpdated:
            stream_id = cast(h2.events.WindowUpdated, event).stream_id
            if stream_id:
                stream = self.streams.get(stream_id)
                if stream is not None:
                    self.send_pending(stream)
            else:
                self._send_all()
        elif kind is h2.events.RequestReceived:
            ev_request = cast(h2.events.RequestReceived, event)
            assert ev_request.stream_id is not None
            self.request_received(ev_request.stream_id, list(ev_request.headers or []),
                                  ev_request.stream_ended is not None)
        elif kind is h2.events.ResponseReceived:
            ev_response = cast(h2.events.ResponseReceived, event)
            assert ev_response.stream_id is not None
            # Our stream, open in h2: not lost (a lost stream is closed in h2, which then drops its frames).
            conn = self.streams[ev_response.stream_id].get_protocol()
            assert isinstance(conn, H2ClientConnection)
            conn._h2_response(list(ev_response.headers or []))
        elif kind is h2.events.StreamEnded:
            stream_id = cast(h2.events.StreamEnded, event).stream_id
            assert stream_id is not None
            ended = self.streams.get(stream_id)
            if ended is not None:  # not refused or answered already
                ended.ended()
        elif kind is h2.events.StreamReset:
            ev_reset = cast(h2.events.StreamReset, event)
            assert ev_reset.stream_id is not None
            stream = self.streams.get(ev_reset.stream_id)
            if stream is not None:
                code = ev_reset.error_code
                stream._lose(None if code in (ErrorCodes.NO_ERROR, 0) else
                             ConnectionResetError(f"HTTP/2 stream {ev_reset.stream_id} reset by the peer "
                                                  f"({_code_name(code)})"))
        elif kind is h2.events.RemoteSettingsChanged:
            self.settings_changed(cast(h2.events.RemoteSettingsChanged, event))
        elif kind is h2.events.ConnectionTerminated:
            ev_goaway = cast(h2.events.ConnectionTerminated, event)
            self._terminated(f"HTTP/2 connection closed by the peer (GOAWAY, {_code_name(ev_goaway.error_code)})")

    def _terminated(self, why: str) -> None:
        """h2 sends and receives nothing more after a GOAWAY: every stream ends now, then TCP."""
        self.going_away = True
        for stream in list(self.streams.values()):
            stream._lose(ConnectionResetError(why))
        self._close_if_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.going_away = True
        for stream in list(self.streams.values()):
            stream._lose(exc if exc is not None else ConnectionResetError("the HTTP/2 connection was closed"))
        self.transport = None
        self.closed.set()

    def pause_writing(self) -> None:
        self.tcp_paused = True
        for stream in self.streams.values():
            stream._check_high()

    def resume_writing(self) -> None:
        self.tcp_paused = False
        self._send_all()
        self.flush()

    # -- for subclasses ------------------------------------------------------------------

    def request_received(self, stream_id: int, block: list[_Received], ended: bool) -> None:
        self.h2.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)  # a server's push or a request to a client

    def settings_changed(self, event: h2.events.RemoteSettingsChanged) -> None:
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._send_all()

    # -- for streams -------------------------------------------------------------------

    def soon(self) -> None:
        """Write what h2 has to send once the current callback ends: the frames of many
        streams, and of a burst of messages, go out in one TLS write."""
        if self._receiving or self._flush_handle is not None:
            return  # data_received, or the pending callback, writes it
        self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._unflushed = 0
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def acknowledge(self, stream: StreamTransport, flow: int) -> None:
        if flow:
            self.h2.acknowledge_received_data(flow, stream.stream_id)

    def _send_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream._pending or (stream._end_wanted and not stream.end_sent):
                self.send_pending(stream)
            else:
                stream._check_low()

    def send_pending(self, stream: StreamTransport) -> None:
        """Give the stream's written data to h2 as its windows allow; END_STREAM after it if asked."""
        # Only for a stream not lost (its callers check), so open in h2 too: our END_STREAM is not sent yet.
        pending = stream._pending
        h2conn = self.h2
        stream_id = stream.stream_id
        while pending and not self.tcp_paused:
            size = min(len(pending), h2conn.local_flow_control_window(stream_id), h2conn.max_outbound_frame_size)
            if size <= 0:
                break
            h2conn.send_data(stream_id, bytes(pending[:size]))
            del pending[:size]
            self._unflushed += size
            if self._unflushed >= _FLUSH_AT:
                # Written now, not at the end of the callback: the TCP connection's backpressure
                # (pause_writing) then stops this loop, instead of h2 buffering all windows allow.
                self.flush()
        if not pending and stream._end_wanted and not stream.end_sent:
            stream.end_sent = True
            if stream.end_received:
                # The peer ended its side already: the stream is complete once ours ends.
                if stream.answered:
                    h2conn.end_stream(stream_id)  # what tells an HTTP client the answer is complete
                else:
                    # A WebSocket: RST_STREAM NO_ERROR rather than an empty END_STREAM, which some
                    # servers (hypercorn) fail on once they dropped the stream they ended.
                    h2conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
                self.soon()
                stream._lose(None)
                return
            h2conn.end_stream(stream_id)
        self.soon()
        stream._check_low()

    def reset(self, stream: StreamTransport, code: int) -> None:
        try:
            self.h2.reset_stream(stream.stream_id, code)
        except h2.exceptions.ProtocolError:
            pass  # already closed
        self.soon()

    def stream_done(self, stream: StreamTransport) -> None:
        if stream.end_sent and stream.end_received:
            stream._lose(None)

    def forget(self, stream: StreamTransport) -> None:
        del self.streams[stream.stream_id]
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        """Once going away and without streams: GOAWAY (if h2 still may), then close TCP."""
        transport = self.transport
        if not self.going_away or self.streams or transport is None or transport.is_closing():
            return
        self.h2.close_connection()  # GOAWAY; h2 allows it after a GOAWAY sent or received too
        self.flush()
        transport.close()

    def shutdown(self) -> None:
        """Refuse new streams; once the open ones end, GOAWAY and close the TCP connection.

        (``h2`` neither sends nor receives anything after a GOAWAY, so it
        waits for the streams to end.)
        """
        self.going_away = True
        self._close_if_idle()

    def send_headers(self, stream: StreamTransport, block: Sequence[H2Header], body: bytes | None = None) -> None:
        """Send a header block on a stream; with ``body``, that body then END_STREAM (a final HTTP answer)."""
        if stream.lost:
            return  # reset by the peer (or the connection lost) while the answer was being made
        self.h2.send_headers(stream.stream_id, list(block), end_stream=body == b"")
        if body is not None:
            stream.answered = True
            stream._closing = True
            if body:
                stream._pending += body
            stream._end_wanted = True
            if body == b"":
                stream.end_sent = True
            self.send_pending(stream)
            if not stream.end_received and not stream.lost and not stream._pending:
                # The answer is complete; the request side is not needed (RFC 9113 §8.1).
                self.reset(stream, ErrorCodes.NO_ERROR)
                stream._lose(None)
        self.soon()


def _code_name(code: Any) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"error code {code}"


# -- client --------------------------------------------------------------------------------


class H2ClientConnection(client_module.ClientConnection):
    """A client WebSocket on one HTTP/2 stream, returned by :func:`connect` when HTTP/2 was used.

    It is a :class:`~wskit.asyncio.ClientConnection`: same API.

    Attributes:
        http_version: ``"2"``.
    """

    protocol: H2ClientProtocol  # type: ignore[assignment]
    http_version = "2"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Connection.connection_made(self, transport)  # the request is a header block, sent by the carrier

    @property
    def stream_id(self) -> int | None:
        """The HTTP/2 stream of this WebSocket."""
        return None if self._transport is None else cast(int, self._transport.get_extra_info("stream_id"))

    def _h2_response(self, block: list[_Received]) -> None:
        try:
            self.protocol.receive_response(block)
        except InvalidHandshake as exc:
            self._handshake_failed(exc)
            return
        self._opened()


class _ClientCarrier(_Carrier):
    def __init__(self, key: tuple[Any, ...], **kwargs: Any) -> None:
        super().__init__(client_side=True, **kwargs)
        self.key = key
        self.settings: asyncio.Future[bool] = self.loop.create_future()
        self.reserved = 0  # streams being opened

    def settings_changed(self, event: h2.events.RemoteSettingsChanged) -> None:
        super().settings_changed(event)
        if not self.settings.done():
            self.settings.set_result(bool(self.h2.remote_settings.enable_connect_protocol))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.settings.done():
            self.settings.set_exception(ConnectionClosedError(
                CloseCode.ABNORMAL_CLOSURE, "", "the HTTP/2 connection closed before the server's SETTINGS"))
            self.settings.exception()  # retrieved: nobody may be waiting
        _forget_carrier(self)

    def has_room(self) -> bool:
        return (not self.going_away and self.transport is not None and not self.transport.is_closing()
                and len(self.streams) + self.reserved < self.h2.remote_settings.max_concurrent_streams)

    def open_stream(self, conn: H2ClientConnection) -> None:
        block = conn.protocol.request_headers()  # first: it raises for bad extra headers
        stream_id = self.h2.get_next_available_stream_id()
        stream = StreamTransport(self, stream_id, conn)
        self.streams[stream_id] = stream
        conn.connection_made(stream)
        self.h2.send_headers(stream_id, block, end_stream=False)
        self.soon()

    def forget(self, stream: StreamTransport) -> None:
        super().forget(stream)
        if not self.streams and not self.reserved:
            self.shutdown()  # the last WebSocket ended: so does the HTTP/2 connection


# Open HTTP/2 connections of this process, per event loop, by (host, port, TLS settings).
_CARRIERS: dict[asyncio.AbstractEventLoop, dict[tuple[Any, ...], list[_ClientCarrier]]] = {}
_DIALS: dict[asyncio.AbstractEventLoop, dict[tuple[Any, ...], asyncio.Future[_ClientCarrier | None]]] = {}


def _forget_carrier(carrier: _ClientCarrier) -> None:
    pool = _CARRIERS.get(carrier.loop, {})
    carriers = pool.get(carrier.key)
    if carriers is not None and carrier in carriers:
        carriers.remove(carrier)
        if not carriers:
            del pool[carrier.key]
    if not pool:
        _CARRIERS.pop(carrier.loop, None)


class connect(client_module.connect):
    """Open a WebSocket client connection over HTTP/2 when the server allows it.

    Takes the arguments of :func:`wskit.asyncio.connect`; the URI must be
    ``wss://``. TLS offers ALPN ``h2`` then ``http/1.1`` (on ``ssl``, when
    given: this sets its ALPN protocols). Then:

    * the server chose ``h2`` and announced SETTINGS_ENABLE_CONNECT_PROTOCOL:
      the WebSocket is a stream of that HTTP/2 connection. Later calls for
      the same host, port and TLS settings open their WebSockets on the same
      connection while the server's SETTINGS_MAX_CONCURRENT_STREAMS allows;
      the connection closes when its last WebSocket does;
    * the server chose ``http/1.1`` (or no ALPN): the usual HTTP/1.1 upgrade
      on that TLS connection;
    * the server chose ``h2`` without extended CONNECT: that connection is
      closed and a new one opens with HTTP/1.1 only.

    The result is an :class:`H2ClientConnection` over HTTP/2, a
    :class:`~wskit.asyncio.ClientConnection` over HTTP/1.1; both have the
    same API, and ``http_version`` (``"2"`` or ``"1.1"``) tells which.

    Args:
        uri: the ``wss://`` URI.
        max_streams: SETTINGS_MAX_CONCURRENT_STREAMS this client announces
            (it accepts no stream from the server anyway).
        stream_window: the receive window of each stream, in bytes.
        **kwargs: the options of :func:`wskit.asyncio.connect`.

    Raises:
        ValueError: for a ``ws://`` URI (h2c is not supported).
    """

    def __init__(self, uri: str | None = None, *, max_streams: int = MAX_STREAMS,
                 stream_window: int = STREAM_WINDOW, **kwargs: Any) -> None:
        given_ssl = kwargs.get("ssl")
        super().__init__(uri, **kwargs)
        self._uri = self._client.uri
        self._wsuri = parse_uri(self._uri)
        # One TLS context for every attempt (ALPN is set on it), HTTP/1.1 fallbacks included.
        self._ssl = self._client.ssl_for(self._wsuri)
        self._client = dataclasses.replace(self._client, ssl=self._ssl)
        self._server_hostname = self._client.server_hostname
        if not self._wsuri.secure:
            raise ValueError(f"WebSockets over HTTP/2 need TLS: use a wss:// URI, not {self._uri!r} "
                             "(HTTP/2 over cleartext, h2c, is not supported)")
        _check_window(stream_window, max_streams)
        self._max_streams = max_streams
        self._stream_window = stream_window
        assert self._ssl is not None
        self._ssl.set_alpn_protocols(["h2", "http/1.1"])
        # Streams share an HTTP/2 connection when they would have made the same one.
        same_tls: object = "default" if given_ssl is None and "config" not in kwargs else id(self._ssl)
        self._key = (self._wsuri.host, self._wsuri.port, self._server_hostname, same_tls, self._sock is None)

    def _make_h2(self) -> H2ClientConnection:
        conn_id = uuid.uuid4()
        logger = make_logger(self._logger, "wskit.client", conn_id)
        protocol = H2ClientProtocol(
            self._uri, origin=self._origin, extra_headers=self._client.extra_headers, user_agent=self._user_agent,
            **self._options.protocol_kwargs(logger),
        )
        return H2ClientConnection(protocol, conn_id=conn_id, logger=logger, **self._options.connection_kwargs())

    async def _connect(self) -> client_module.ClientConnection:
        holder: list[client_module.ClientConnection] = []
        try:
            await asyncio.wait_for(self._open_any(holder), self._options.open_timeout)
        except asyncio.TimeoutError:
            for conn in holder:
                client_module._abort(conn)
            raise TimeoutError(f"timed out after {self._options.open_timeout} s opening {self._uri}") from None
        except BaseException:
            for conn in holder:
                client_module._abort(conn)
            raise
        self.connection = conn = holder[-1]
        return conn

    async def _open_any(self, holder: list[client_module.ClientConnection]) -> None:
        carrier = await self._carrier(holder)
        if carrier is None:
            return  # HTTP/1.1: holder has the open connection
        try:
            conn = self._make_h2()
            holder.append(conn)
        finally:
            carrier.reserved -= 1
        try:
            carrier.open_stream(conn)
        finally:
            if not carrier.streams and not carrier.reserved:
                carrier.shutdown()  # nothing else uses it
        await conn._handshake

    async def _carrier(self, holder: list[client_module.ClientConnection]) -> _ClientCarrier | None:
        """An HTTP/2 connection with room for one more stream (reserved), or ``None`` after HTTP/1.1 opened."""
        loop = asyncio.get_running_loop()
        while True:
            for carrier in _CARRIERS.get(loop, {}).get(self._key, []):
                if carrier.has_room():
                    carrier.reserved += 1
                    return carrier
            dials = _DIALS.setdefault(loop, {})
            dialing = dials.get(self._key)
            if dialing is not None:
                await asyncio.shield(dialing)
                continue
            dialing = dials[self._key] = loop.create_future()
            try:
                dialed = await self._dial(holder)
                if dialed is not None:
                    dialed.reserved += 1
                    _CARRIERS.setdefault(loop, {}).setdefault(self._key, []).append(dialed)
                return dialed
            finally:
                del dials[self._key]
                if not dials:
                    del _DIALS[loop]
                dialing.set_result(None)

    async def _dial(self, holder: list[client_module.ClientConnection]) -> _ClientCarrier | None:
        loop = asyncio.get_running_loop()
        logger = make_logger(self._logger, "wskit.client", uuid.uuid4())
        carrier = _ClientCarrier(self._key, max_streams=self._max_streams, stream_window=self._stream_window,
                                 logger=logger)
        kwargs = dict(self._kwargs)
        kwargs["ssl"] = self._ssl
        kwargs["server_hostname"] = self._client.server_hostname_for(self._wsuri)

        def http11() -> client_module.ClientConnection:
            conn = self._make(self._uri)
            holder.append(conn)
            return conn

        chooser = _Chooser(carrier, http11)
        if self._sock is not None:
            transport, _ = await loop.create_connection(lambda: chooser, sock=self._sock, **kwargs)
        else:
            transport, _ = await loop.create_connection(lambda: chooser, self._wsuri.host, self._wsuri.port, **kwargs)
        if chooser.chosen is not carrier:  # HTTP/1.1 on this TLS connection
            await holder[-1]._handshake
            return None
        try:
            extended_connect = await carrier.settings
        except BaseException:
            transport.abort()
            raise
        if extended_connect:
            return carrier
        # HTTP/2 without RFC 8441: a new connection, HTTP/1.1 only.
        carrier.shutdown()
        assert self._ssl is not None
        self._ssl.set_alpn_protocols(["http/1.1"])
        conn = self._make(self._uri)
        holder.append(conn)
        try:
            await self._open(conn)
        finally:
            self._ssl.set_alpn_protocols(["h2", "http/1.1"])
        return None


class _Chooser(asyncio.Protocol):
    """Gives a fresh TLS connection, once its handshake is done, to the protocol ALPN chose.

    It does so in ``connection_made``, before any data is read: a TLS 1.2
    server sends its first HTTP/2 frames with its last handshake message.
    """

    def __init__(self, carrier: _ClientCarrier, http11: Callable[[], client_module.ClientConnection]) -> None:
        self.carrier = carrier
        self.http11 = http11
        self.chosen: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        h2_chosen = transport.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        self.chosen = chosen = self.carrier if h2_chosen else self.http11()
        transport.set_protocol(chosen)
        chosen.connection_made(transport)


# -- server --------------------------------------------------------------------------------


class H2ServerConnection(server_module.ServerConnection):
    """A server WebSocket on one HTTP/2 stream: what a :func:`serve` handler gets over HTTP/2.

    It is a :class:`~wskit.asyncio.ServerConnection`: same API, same
    ``process_request`` (its ``request.method`` is ``"CONNECT"``).

    Attributes:
        http_version: ``"2"``.
    """

    protocol: H2ServerProtocol  # type: ignore[assignment]
    http_version = "2"

    @property
    def stream_id(self) -> int | None:
        """The HTTP/2 stream of this WebSocket."""
        return None if self._transport is None else cast(int, self._transport.get_extra_info("stream_id"))

    def _send_headers(self, block: Sequence[H2Header], body: bytes | None = None) -> None:
        stream = cast(StreamTransport, self._transport)
        stream._carrier.send_headers(stream, block, body)

    def _h2_request(self, block: list[_Received], ended: bool) -> None:
        try:
            events = self.protocol.receive_request(block)
            if ended:
                exc = InvalidHandshake("extended CONNECT with END_STREAM: the stream must stay open to carry the "
                                       "WebSocket")
                self.protocol._handshake_failed(exc)
                raise exc
        except InvalidHandshake as exc:
            request = self.protocol.request
            if request is not None and self.server._process_request is not None and exc.status == 405:
                # Not an extended CONNECT; maybe a plain request the application answers.
                self._task = self._loop.create_task(self._answer_http(request, exc))
                self.server._tasks.add(self._task)
                self._task.add_done_callback(self.server._tasks.discard)
                return
            if self._debug:
                self.logger.debug("! invalid extended CONNECT: %s", exc)
            self._send_error(exc)
            return
        self._task = self._loop.create_task(self._run(cast(Request, events[0])))
        self.server._tasks.add(self._task)
        self._task.add_done_callback(self.server._tasks.discard)

    def eof_received(self) -> bool | None:
        if self._opening:
            return True  # a request without a body (a GET) ends its side at once: the answer still goes out
        return super().eof_received()

    def _send_error(self, exc: InvalidHandshake) -> None:
        response = exc.response
        if response is not None:  # a plugin's answer
            self._send_response(response)
            return
        block, body = error_response(exc.status, str(exc), exc.headers)
        self._send_headers(block, body)
        self._response = Response(exc.status, "", Headers(block[1:]), body)
        self._end_opening()

    def _opening_data(self, data: bytes) -> None:
        if self.protocol.state is not State.CONNECTING:
            return  # refused: the request side is not read
        try:
            self.protocol.receive_data(data)  # kept (bounded) until the answer
        except InvalidHandshake as exc:
            assert self._task is not None  # the handshake's, started with the request
            self._task.cancel()
            self._send_error(exc)

    async def _answer_http(self, request: Request, exc: InvalidHandshake) -> None:
        try:
            answer = await self._call_process_request(request)
        except Exception:
            self.logger.error("process_request failed", exc_info=True)
            answer = server_module._error_response(500, "Failed to open a WebSocket connection.\n")
        if answer is not None:
            self._send_response(answer)
        else:
            self._send_error(exc)

    def _send_response(self, response: Response) -> None:
        headers = response.headers if isinstance(response.headers, Headers) else Headers(response.headers)
        block = [(":status", str(response.status_code))]
        block += [(name.lower(), value) for name, value in headers if name.lower() not in CONNECTION_SPECIFIC]
        self._send_headers(block, bytes(response.body))
        self._response = response
        self._end_opening()

    def _opened(self) -> None:
        self._send_headers(self.protocol.response_headers())
        super()._opened()


class _ServerCarrier(_Carrier):
    def __init__(self, acceptor: _Acceptor, **kwargs: Any) -> None:
        super().__init__(client_side=False, **kwargs)
        self.acceptor = acceptor

    def request_received(self, stream_id: int, block: list[_Received], ended: bool) -> None:
        if self.going_away or len(self.streams) >= self.max_streams:
            # RFC 9113 §5.1.2: beyond SETTINGS_MAX_CONCURRENT_STREAMS, refused; the others go on.
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        conn = self.acceptor.make_connection()
        stream = StreamTransport(self, stream_id, conn)
        self.streams[stream_id] = stream
        conn.connection_made(stream)
        conn._h2_request(block, ended)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.acceptor.carriers.discard(self)


class _Acceptor:
    """The HTTP/2 side of a :func:`serve`: takes the TLS connections for which ALPN chose ``h2``."""

    def __init__(self, factory: serve, max_streams: int, stream_window: int) -> None:
        self.factory = factory
        self.max_streams = max_streams
        self.stream_window = stream_window
        self.carriers: set[_ServerCarrier] = set()
        self.closing = False

    def take_over(self, conn: server_module.ServerConnection, transport: asyncio.BaseTransport) -> bool:
        """Serve ``transport`` over HTTP/2 if ALPN chose ``h2`` (``True``), else leave it to ``conn``."""
        if isinstance(transport, StreamTransport):
            return False  # a WebSocket stream of an HTTP/2 connection already taken over
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            return False
        carrier = _ServerCarrier(self, max_streams=self.max_streams, stream_window=self.stream_window,
                                 logger=conn.logger)
        self.carriers.add(carrier)
        transport.set_protocol(carrier)
        carrier.connection_made(transport)
        if self.closing:
            carrier.shutdown()
        return True

    def make_connection(self) -> H2ServerConnection:
        return self.factory._make_h2_connection()

    def close(self) -> None:
        """The server closes: GOAWAY on every HTTP/2 connection; each closes once its streams end."""
        self.closing = True
        for carrier in list(self.carriers):
            carrier.shutdown()

    def abort(self) -> None:
        """The server's close timed out: abort every HTTP/2 connection's transport."""
        for carrier in list(self.carriers):
            if carrier.transport is not None:
                carrier.transport.abort()


class serve(server_module.serve):
    """Start a WebSocket server that also speaks HTTP/2 (RFC 8441) to clients that choose it.

    Takes the arguments of :func:`wskit.asyncio.serve`, and ``ssl`` is
    required: its ALPN protocols are set to ``h2`` and ``http/1.1``. A
    client choosing ``http/1.1`` (or none) gets the usual HTTP/1.1 upgrade;
    one choosing ``h2`` gets an HTTP/2 connection announcing
    SETTINGS_ENABLE_CONNECT_PROTOCOL, on which each extended CONNECT is a
    WebSocket: an :class:`H2ServerConnection` given to ``handler``.
    ``server.connections`` holds both kinds.

    Args:
        max_streams: SETTINGS_MAX_CONCURRENT_STREAMS: WebSockets at once on
            one HTTP/2 connection; one more is refused with RST_STREAM
            REFUSED_STREAM, the others going on.
        stream_window: the receive window of each stream, in bytes.
        **kwargs: the arguments of :func:`wskit.asyncio.serve`.

    Raises:
        ValueError: without ``ssl`` (h2c is not supported).
    """

    def __init__(self, handler: Any, host: Any = None, port: int | None = None, *, max_streams: int = MAX_STREAMS,
                 stream_window: int = STREAM_WINDOW, **kwargs: Any) -> None:
        super().__init__(handler, host, port, **kwargs)
        if self._ssl is None:
            raise ValueError("serving WebSockets over HTTP/2 needs TLS: pass ssl= (h2c is not supported)")
        _check_window(stream_window, max_streams)
        self._ssl.set_alpn_protocols(["h2", "http/1.1"])
        self.server._http2 = _Acceptor(self, max_streams, stream_window)

    def _make_h2_connection(self) -> H2ServerConnection:
        conn_id = uuid.uuid4()
        logger = make_logger(self._logger, "wskit.server", conn_id)
        holder: list[H2ServerConnection] = []
        selector = None
        if self._select is not None:
            user_select = self._select

            def selector(protocol: Any, offered: Sequence[str]) -> str | None:
                return user_select(holder[0], offered)

        protocol = H2ServerProtocol(select_subprotocol=selector, origins=self._origins,
                                    **self._options.protocol_kwargs(logger))
        conn = H2ServerConnection(protocol, self.server, open_timeout=self._options.open_timeout, conn_id=conn_id,
                                  logger=logger, **self._options.connection_kwargs())
        holder.append(conn)
        return conn


def _check_window(stream_window: int, max_streams: int) -> None:
    if not isinstance(stream_window, int) or not 65535 <= stream_window <= _HIGHEST_ID:
        raise ValueError(f"stream_window must be an int from 65535 to {_HIGHEST_ID}, got {stream_window!r}")
    if not isinstance(max_streams, int) or max_streams < 1:
        raise ValueError(f"max_streams must be a positive int, got {max_streams!r}")

