"""The asyncio connection shared by clients and servers.

:class:`Connection` is an :class:`asyncio.BufferedProtocol`: the transport
reads into a buffer the connection lends it (one per thread, kept, so no
chunk is allocated per read) and what it read goes straight to the
sans-I/O core (``data_received`` is the same path for callers that hand
bytes); what the core returns to send goes straight to
``transport.write``. Every protocol decision stays in the core
(:class:`wskit.Protocol`) and in the close-handshake and ping policy
shared by every I/O layer (:class:`wskit.duties.Duties`); this layer only
moves bytes, owns timers (keepalive, close timeout) and applies
backpressure in both directions:

* receiving: complete messages wait in a deque; when ``max_queue`` of them
  wait, the transport stops reading the socket until ``recv`` drains them;
* sending: the transport's write buffer high-water mark is ``write_limit``;
  when it is exceeded the transport calls ``pause_writing`` and ``send``
  waits for ``resume_writing``;
* automatic replies (the Pong answering a Ping) obey the same limit: when
  one leaves the write buffer above ``write_limit``, the transport stops
  reading the socket, so that a peer that sends Pings without reading the
  Pongs cannot make the buffer grow; reading resumes when the buffer has
  drained below the low-water mark (``write_limit // 4``).

Two things keep small request/response exchanges cheap:

* when bytes complete a message while a task waits in ``recv()``,
  ``data_received`` resumes that task in place (:mod:`wskit.asyncio._waiter`)
  instead of scheduling it for the loop's next pass;
* small data frames that task sends during that step are held and written
  together when it ends (one system call for a burst of replies); any other
  write (a control frame, a large frame) carries them first, and 64 held
  frames are written at once, so order and memory bounds are kept.

The per-message path allocates nothing beyond the core's event, the queue
entry and, when ``recv`` has to wait, one waiter.

An application that sets :attr:`Connection.on_message` gets each message
by a plain function call inside ``data_received`` instead: no queue, no
task to wake. Its replies by :meth:`Connection.send_nowait` are held and
written together like those above, and a reply that leaves the write
buffer above ``write_limit`` stops reading the socket as an automatic reply
does.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Mapping, MutableMapping
from typing import Any, cast

from .._io import resolve_logger
from ..defaults import CLOSE_TIMEOUT, MAX_QUEUE, PING_INTERVAL, PING_TIMEOUT, WRITE_LIMIT
from ..duties import (
    CALLBACK_FAILURE,
    FRAGMENT_FAILURE,
    KEEPALIVE_FAILURE,
    After,
    Duties,
    Release,
    check_options,
    fragment_kind,
    is_fragment_source,
    send_type_error,
)
from ..events import BinaryMessage, Close, Event, Ping, Pong, TextMessage
from ..exceptions import ConcurrencyError, ConnectionClosedOK, InvalidState, ProtocolError, WebSocketClosed
from ..frames import CloseCode, Opcode
from ..protocol import Protocol, State
from ._waiter import wake

__all__ = ["Connection", "ConcurrencyError", "Data", "LoggerLike", "create_server_function"]

Data = str | bytes
"""A received message: ``str`` for text, ``bytes`` for binary."""

LoggerLike = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]

# send() holds at most this many frames, each smaller than this, during a
# step resumed by data_received (see _handle_events): at most 64 KiB.
_CORK_FRAMES = 64
_CORK_FRAME_SIZE = 1024


# Reads go into one buffer per thread (every transport calls get_buffer,
# fills the buffer and calls buffer_updated in one go, and the core copies
# what it keeps), so the transport allocates no chunk per read and an idle
# connection holds none. Reads shorter than _COPY_BELOW reach the core as
# bytes, which it parses in place; longer ones as a view it copies from.
_READ_SIZE = 256 * 1024
_COPY_BELOW = 64 * 1024
_read_buffers = threading.local()


def _read_buffer() -> memoryview:
    """This thread's read buffer (made on first use)."""
    view: memoryview | None = getattr(_read_buffers, "view", None)
    if view is None:
        view = _read_buffers.view = memoryview(bytearray(_READ_SIZE))
    return view


class _ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes each record with the connection's short id (only when a record is emitted)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs.setdefault("extra", extra)
        return f"[{str(extra.get('connection_id', ''))[:8]}] {msg}", kwargs


def make_logger(logger: LoggerLike | str | None, default: str, conn_id: uuid.UUID) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """Build the per-connection logger adapter.

    Args:
        logger: a logger, an adapter, a logger name, or ``None`` for ``default``.
        default: the logger name used when ``logger`` is ``None``.
        conn_id: the connection id, put in each record's ``connection_id``.
    """
    return _ConnectionLogger(resolve_logger(logger, default), {"connection_id": conn_id})


class Connection(asyncio.Protocol, asyncio.BufferedProtocol):
    """One WebSocket connection running on an asyncio transport.

    Applications receive instances from :func:`wskit.asyncio.connect` (a
    :class:`~wskit.asyncio.ClientConnection`) or as the argument of a
    :func:`wskit.asyncio.serve` handler (a :class:`~wskit.asyncio.ServerConnection`);
    they do not build them.

    Attributes:
        protocol: the sans-I/O core object.
        id: a :class:`uuid.UUID` (version 4) identifying the connection in logs.
        logger: the per-connection :class:`logging.LoggerAdapter`.
        latency: round-trip time of the last ping answered, in seconds
            (``0.0`` until one was answered).
    """

    def __init__(
        self,
        protocol: Protocol,
        *,
        conn_id: uuid.UUID,
        logger: logging.LoggerAdapter,  # type: ignore[type-arg]
        max_queue: int | None = MAX_QUEUE,
        write_limit: int = WRITE_LIMIT,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float | None = PING_TIMEOUT,
        close_timeout: float | None = CLOSE_TIMEOUT,
    ) -> None:
        check_options(max_queue=max_queue, write_limit=write_limit, ping_interval=ping_interval,
                      ping_timeout=ping_timeout, close_timeout=close_timeout)
        self.protocol = protocol
        self._duties = Duties(protocol)
        self.id = conn_id
        self.logger = logger
        self._debug = logger.isEnabledFor(logging.DEBUG)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._read_view = _read_buffer()  # made on this loop's thread
        self._into: memoryview | None = None  # get_buffer gave the core's own buffer (see receive_buffer)
        self._joins_writes = False  # set by connection_made
        self._max_queue = max_queue
        self._low_queue = 0 if max_queue is None else max_queue // 4
        self._write_limit = write_limit
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._queue: deque[Data] = deque()
        self._recv_waiter: asyncio.Future[None] | None = None
        self._paused_reading = False  # by the queue of received messages (max_queue)
        self._paused_replies = False  # by automatic replies the peer does not read (write_limit)
        self._paused_writing = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._sending_fragments: asyncio.Future[None] | None = None
        self._opening = True
        self._lost = False
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._ka_handle: asyncio.TimerHandle | None = None
        self._ka_timeout: asyncio.TimerHandle | None = None
        self._close_handle: asyncio.TimerHandle | None = None
        self._holding = False  # our Close waits in _duties until recv() drained the queue
        self._eof_sent = False
        # Small data frames sent by the task that data_received resumed in
        # place (see _handle_events) are held here while _corking, and
        # written together by the next _write (at the latest when that step ends).
        self._corking = False
        self._corked: list[bytes] = []
        self._on_message: Callable[[Data], object] | None = None

    # -- public properties ---------------------------------------------------

    @property
    def state(self) -> State:
        """The connection state (``State.CONNECTING`` ... ``State.CLOSED``)."""
        return self.protocol.state

    @property
    def close_code(self) -> int | None:
        """The close code: the peer's, ours when we failed the connection
        (e.g. 1011 after a keepalive timeout), 1006 after an abrupt
        disconnect; ``None`` while the connection is open."""
        return self._duties.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason going with :attr:`close_code`."""
        return self._duties.close_reason

    @property
    def latency(self) -> float:
        """Round-trip time of the last ping answered, in seconds (``0.0``
        until one was answered)."""
        return self._duties.latency

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or ``None``."""
        return self.protocol.subprotocol

    @property
    def remote_address(self) -> Any:
        """The peer's address (``(host, port)`` for TCP), or ``None``."""
        return None if self._transport is None else self._transport.get_extra_info("peername")

    @property
    def local_address(self) -> Any:
        """Our end's address (``(host, port)`` for TCP), or ``None``."""
        return None if self._transport is None else self._transport.get_extra_info("sockname")

    @property
    def transport(self) -> asyncio.Transport | None:
        """The asyncio transport (``None`` before the connection is made)."""
        return self._transport

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.protocol.state.name}>"

    # -- asyncio.Protocol callbacks -------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance() check: other loops' transports (uvloop's) provide
        # the same interface without subclassing asyncio.Transport.
        self._transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self._write_limit, low=self._write_limit // 4)
        self._joins_writes = getattr(type(transport), "writelines", None) is asyncio.WriteTransport.writelines

    def get_buffer(self, sizehint: int) -> memoryview:
        # Straight into the large frame being gathered, when there is one.
        into = self._into = self.protocol.receive_buffer()
        return self._read_view if into is None else into

    def buffer_updated(self, nbytes: int) -> None:
        protocol = self.protocol
        try:
            if self._into is not None:
                self._into = None
                events = protocol.receive_into(nbytes)
            elif self._opening:
                self._opening_data(self._read_view[:nbytes].tobytes())
                return
            elif nbytes < _COPY_BELOW:
                events = protocol.receive_data(self._read_view[:nbytes].tobytes())
            else:
                events = protocol.receive_data(self._read_view[:nbytes])
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if events:
            self._handle_events(events)

    def data_received(self, data: bytes) -> None:
        if self._opening:
            self._opening_data(data)
            return
        try:
            events = self.protocol.receive_data(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if events:
            self._handle_events(events)

    def eof_received(self) -> bool | None:
        if self._debug:
            self.logger.debug("< EOF")
        return None  # let the transport close itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        try:
            self.protocol.receive_eof()
        except ProtocolError as error:  # only during the opening handshake
            self._opening_lost(error)
        else:
            if self._opening:
                self._opening_lost(None)
        self._opening = False
        for handle in (self._ka_handle, self._ka_timeout, self._close_handle):
            if handle is not None:
                handle.cancel()
        self._ka_handle = self._ka_timeout = self._close_handle = None
        if self._debug:
            self.logger.debug("= connection lost (code %s)%s", self.close_code, f": {exc!r}" if exc else "")
        if not self._closed.done():
            self._closed.set_result(None)
        recv_waiter = self._recv_waiter
        if recv_waiter is not None and not recv_waiter.done():
            recv_waiter.set_result(None)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        waiters = self._duties.drop_pings()
        if waiters:
            closed = self._closed_exception()
            for fut in waiters:
                if fut is not None and not fut.done():
                    fut.set_exception(closed)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._paused_replies:
            # The peer read its replies: read its frames again (unless the
            # queue of received messages keeps reading paused).
            self._paused_replies = False
            if not self._paused_reading and self._transport is not None and not self._lost:
                self._transport.resume_reading()
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- hooks for the client and server subclasses ---------------------------

    def _opening_data(self, data: bytes) -> None:
        """Bytes received during the opening handshake (each subclass reads its side of it)."""

    def _opening_lost(self, error: ProtocolError | None) -> None:
        """The transport closed before the opening handshake completed."""

    def _opened(self) -> None:
        """Called once the opening handshake succeeded: start keepalive."""
        self._opening = False
        if self._ping_interval is not None:
            self._ka_handle = self._loop.call_later(self._ping_interval, self._keepalive)

    # -- writing ---------------------------------------------------------------

    def _write(self, data: list[bytes]) -> None:
        corked = self._corked
        if corked:  # held data frames go first, in the same write
            data = corked + data
            corked.clear()
        transport = self._transport
        if transport is None or self._eof_sent or transport.is_closing():
            return
        if len(data) == 1:
            transport.write(data[0])
        elif data:
            if self._joins_writes and len(data[-1]) >= _COPY_BELOW:
                # This transport's writelines joins the pieces into one new
                # bytes: write them one by one instead (each goes to the
                # socket as far as it takes, only the rest is buffered).
                for piece in data:
                    transport.write(piece)
                return
            transport.writelines(data)

    def _write_nowait(self, build: Callable[[Protocol], list[bytes]]) -> bool | None:
        """Write a message built by ``build(protocol)`` now, never waiting (for ``broadcast``).

        Returns:
            ``None`` when the connection is not open (nothing written),
            ``False`` when it cannot take the message now: its write buffer
            is over ``write_limit``, or a fragmented message is being sent
            (nothing written), ``True`` when written.
        """
        transport = self._transport
        if (self._lost or self.protocol.state is not State.OPEN or transport is None or self._eof_sent
                or transport.is_closing()):
            return None
        if self._paused_writing or self._sending_fragments is not None:
            return False
        # Open and no fragmented message under way: the core may send data now.
        try:
            data = build(self.protocol)
        except ProtocolError as exc:  # an extension or plugin failed: this connection fails with 1011
            self._build_failed(exc)
            return None
        self._write(data)
        return True

    def _build_failed(self, exc: ProtocolError) -> None:
        """Building a message failed in an extension or plugin: fail the connection.

        The protocol logged the error and put our Close (1011) in
        ``exc.to_send``; the closing goes on as after a failure on the
        reading side.
        """
        self._act(self._duties.failed(exc, False))

    async def _drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = self._loop.create_future()
        # shield: one sender's cancellation must not cancel the others' wait.
        await asyncio.shield(waiter)
        if self._lost:
            raise self._closed_exception()

    # -- receiving -------------------------------------------------------------

    def _hold_replies(self, run: Callable[[Any], object], argument: Any) -> None:
        """Call ``run(argument)``; the small data frames sent meanwhile leave in one write when it returns."""
        self._corking = True
        try:
            run(argument)
        finally:
            self._corking = False
            if self._corked:
                self._write([])

    def _handle_events(self, events: list[Event]) -> None:
        if self._on_message is not None and not self._corking:
            # What the callback sends for the messages of this read leaves together.
            self._hold_replies(self._handle_events, events)
            return
        queue = self._queue
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BinaryMessage:
                on_message = self._on_message
                if on_message is None:
                    queue.append(event.data)  # type: ignore[attr-defined]
                else:
                    self._deliver(on_message, event.data)  # type: ignore[attr-defined]
            elif kind is Ping:
                self._on_ping(event)  # type: ignore[arg-type]
            elif kind is Pong:
                self._on_pong(event.data)  # type: ignore[attr-defined]
            elif kind is Close:
                self._on_close_frame(event)  # type: ignore[arg-type]
        if queue:
            max_queue = self._max_queue
            if max_queue is not None and len(queue) >= max_queue and not self._paused_reading:
                self._paused_reading = True
                if not self._paused_replies and self._transport is not None and not self._lost:
                    self._transport.pause_reading()
            waiter = self._recv_waiter
            if waiter is not None and not waiter.done():
                # Last, as the task waiting in recv() may run right here (see
                # _waiter); what it sends meanwhile leaves in one write.
                self._hold_replies(wake, waiter)

    def _deliver(self, callback: Callable[[Data], object], message: Data) -> None:
        """Pass one message to the on_message callback."""
        try:
            callback(message)
        except WebSocketClosed:
            pass  # it answered while the connection closes: nothing to report
        except Exception:
            self._callback_failed()

    def _on_ping(self, event: Ping) -> None:
        if self._debug:
            self.logger.debug("< PING %r", event.data[:32])
        data = self._duties.answer_ping(event.data)
        if data:
            self._write(data)
            if self._paused_writing:
                self._pause_for_replies()

    def _pause_for_replies(self) -> None:
        # A reply (a Pong, or what the on_message callback sent) left the
        # write buffer over write_limit: the peer does not read our replies;
        # stop reading until the buffer drains (resume_writing).
        if not self._paused_replies:
            self._paused_replies = True
            if not self._paused_reading and self._transport is not None and not self._lost:
                self._transport.pause_reading()

    def _callback_failed(self) -> None:
        """The on_message callback raised: log it, stop calling it, fail the connection with 1011."""
        self.logger.error("on_message callback failed", exc_info=True)
        self._on_message = None  # later messages wait for recv(), as after any failure
        if not self._lost:
            self._fail(*CALLBACK_FAILURE)

    def _on_pong(self, data: bytes) -> None:
        for fut, rtt in self._duties.pong_received(data, time.monotonic()):
            if fut is None:  # our keepalive ping
                if self._ka_timeout is not None:
                    self._ka_timeout.cancel()
                    self._ka_timeout = None
            elif not fut.done():
                fut.set_result(rtt)

    def _on_close_frame(self, event: Close) -> None:
        if self._debug:
            self.logger.debug("< CLOSE %s %r", event.code, event.reason)
        self._act(self._duties.close_received(bool(self._queue)))

    def _protocol_error(self, exc: ProtocolError) -> None:
        """The peer violated the protocol: fail the connection (RFC 6455 §7.1.7)."""
        if self._debug:
            self.logger.debug("! protocol error: %s", exc)
        before = len(self._queue)
        if exc.events:
            self._handle_events(exc.events)
        self._act(self._duties.failed(exc, len(self._queue) > before))

    def _act(self, release: Release | None) -> None:
        """Write what the duties say, then do what they say to the transport.

        ``None``: our Close is held until recv() drained the queue (or
        close_timeout elapsed).
        """
        if release is None:
            self._holding = True
            self._start_close_timer(self._release)
            return
        self._holding = False
        data, after = release
        if data:
            self._write(data)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if after is After.CLOSE:
                transport.close()
            elif after is After.HALF_CLOSE:
                # The peer reads our Close then EOF; we keep reading
                # (discarded by the core) until it closes its end.
                if transport.can_write_eof():
                    transport.write_eof()
                    self._eof_sent = True
                else:
                    transport.close()
        if after is not After.NOTHING:
            self._start_close_timer()

    def _release(self) -> None:
        """Send our held Close now (the queue is drained, or the app closes, or time is up)."""
        if not self._holding:
            return  # already sent (or the layer failed the connection meanwhile)
        if self._close_handle is not None:
            self._close_handle.cancel()
            self._close_handle = None
        if not self._lost:
            self._act(self._duties.release())
        else:
            self._holding = False

    def _start_close_timer(self, callback: Any = None) -> None:
        if self._close_handle is not None or self._lost or self._close_timeout is None:
            return
        self._close_handle = self._loop.call_later(self._close_timeout, callback or self._close_expired)

    def _close_expired(self) -> None:
        self._close_handle = None
        if self._debug:
            self.logger.debug("! close timeout: aborting the transport")
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection from this layer: send a Close if allowed, then close the transport."""
        self._holding = False
        if self._close_handle is not None:  # maybe the held Close's timer
            self._close_handle.cancel()
            self._close_handle = None
        data = self._duties.fail(code, reason)
        if data:
            self._write(data)
        if self._transport is not None:
            self._transport.close()
        self._start_close_timer()

    # -- keepalive -------------------------------------------------------------

    def _keepalive(self) -> None:
        self._ka_handle = None
        if self._lost or self.protocol.state is not State.OPEN:
            return
        if self._ka_timeout is None:  # the previous keepalive ping was answered
            self._write(self._duties.send_ping(None, time.monotonic(), None))
            if self._ping_timeout is not None:
                self._ka_timeout = self._loop.call_later(self._ping_timeout, self._keepalive_expired)
        assert self._ping_interval is not None
        self._ka_handle = self._loop.call_later(self._ping_interval, self._keepalive)

    def _keepalive_expired(self) -> None:
        self._ka_timeout = None  # (connection_lost cancels this timer)
        self.logger.debug("! keepalive ping timeout")
        self._fail(*KEEPALIVE_FAILURE)

    # -- application API -------------------------------------------------------

    def _closed_exception(self) -> WebSocketClosed:
        return self._duties.closed_exception()

    async def _closed_error(self) -> WebSocketClosed:
        """Wait until the transport is closed; return the exception telling how."""
        await asyncio.shield(self._closed)
        return self._closed_exception()

    async def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data:
        """Receive the next message.

        Args:
            timeout: give up after this many seconds (``None``: wait as long
                as needed).
            decode: ``None`` (default): text as ``str``, binary as
                ``bytes``; ``True``: binary decoded from UTF-8 to ``str``
                too; ``False``: text as its UTF-8 ``bytes`` too (as
                python-websockets' ``recv(decode=...)``).

        Returns:
            A ``str`` for a text message, ``bytes`` for a binary message.

        Raises:
            ConnectionClosedOK: the connection was closed cleanly and every
                received message was returned.
            ConnectionClosedError: the connection was closed with an error
                (or lost: code 1006).
            TimeoutError: ``timeout`` elapsed.
            ConcurrencyError: another coroutine is already waiting in ``recv``.
            UnicodeDecodeError: ``decode=True`` and a binary message is not UTF-8.
        """
        message = await self._next_message(timeout, False)
        if decode is None or type(message) is (str if decode else bytes):
            return message
        return message.decode() if decode else message.encode()  # type: ignore[union-attr]

    async def _next_message(self, timeout: float | None, iterating: bool) -> Data:
        # recv()'s body; for ``async for``, a clean close ends the iteration.
        queue = self._queue
        while not queue:
            if self._on_message is not None:
                raise ConcurrencyError("recv() cannot be used while on_message is set: "
                                       "messages go to the callback")
            if self._lost:
                error = self._closed_exception()
                if iterating and type(error) is ConnectionClosedOK:
                    raise StopAsyncIteration
                raise error
            if self._recv_waiter is not None:
                raise ConcurrencyError("recv() is already waiting for a message in another coroutine")
            waiter = self._recv_waiter = self._loop.create_future()
            if timeout is None:
                try:
                    await waiter
                finally:
                    self._recv_waiter = None
            else:
                handle = self._loop.call_later(timeout, _expire, waiter)
                try:
                    await waiter
                finally:
                    self._recv_waiter = None
                    handle.cancel()
        message = queue.popleft()
        if self._paused_reading and len(queue) <= self._low_queue:
            self._resume_after_queue()
        if not queue:
            # Runs after the caller's current step, i.e. after it sent its reply.
            if self._holding:
                self._loop.call_soon(self._release)
        return message

    def _resume_after_queue(self) -> None:
        # The queue of received messages drained below its low-water mark.
        self._paused_reading = False
        if not self._paused_replies and self._transport is not None and not self._lost:
            self._transport.resume_reading()

    @property
    def on_message(self) -> Callable[[Data], object] | None:
        """The function receiving each message as it arrives, or ``None`` (the default).

        While it is ``None``, messages wait in a queue for :meth:`recv` or
        ``async for``. Set a function taking one argument, the message (a
        ``str`` for text, ``bytes`` for binary), and each message is passed
        to it as soon as it is received, in order, by a plain call from the
        event loop's callback that read it: no queue, no task to wake. It is
        the cheapest way to receive (see ``docs/performance.md``).

        - Messages received before it was set, still waiting for
          :meth:`recv`, are passed to it at once, in order.
        - It must not block: it runs inside the event loop. To answer, use
          :meth:`send_nowait` (replies to one read leave in one write). To
          do something that waits, start a task.
        - While it is set, :meth:`recv` and ``async for`` raise
          :class:`ConcurrencyError`; wait for the end with
          :meth:`wait_closed`. Set it back to ``None`` to receive with
          :meth:`recv` again.
        - ``max_queue`` does not apply (there is no queue); the peer's
          pace is the callback's.
        - If it raises, the error is logged, the callback is dropped and the
          connection fails with close code 1011
          (:data:`wskit.duties.CALLBACK_FAILURE`); except for
          :class:`~wskit.exceptions.ConnectionClosed` errors (a reply sent
          while the connection closes), which are ignored, as a handler's
          are.

        Raises:
            TypeError: the value set is neither callable nor ``None``.
            ConcurrencyError: set while a coroutine waits in :meth:`recv`.
        """
        return self._on_message

    @on_message.setter
    def on_message(self, callback: Callable[[Data], object] | None) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(f"on_message must be a callable or None, not {type(callback).__name__}")
        if callback is not None and self._recv_waiter is not None:
            raise ConcurrencyError("on_message cannot be set while recv() is waiting for a message")
        self._on_message = callback
        queue = self._queue
        if callback is None or not queue:
            return
        # Messages that arrived before: to the callback now, in order (until
        # it fails or is replaced), their replies in one write.
        if self._corking:
            self._deliver_queued(callback)
        else:
            self._hold_replies(self._deliver_queued, callback)
        if self._paused_reading and len(queue) <= self._low_queue:
            self._resume_after_queue()
        if not queue and self._holding:
            self._release()  # the callback answered them: our held Close goes out

    def _deliver_queued(self, callback: Callable[[Data], object]) -> None:
        queue = self._queue
        while queue and self._on_message is callback:
            self._deliver(callback, queue.popleft())

    def __aiter__(self) -> AsyncIterator[Data]:
        """Iterate over received messages until the connection closes cleanly.

        The iteration ends on :class:`ConnectionClosedOK`; it raises
        :class:`ConnectionClosedError` after an abnormal closure.
        """
        return _Messages(self)

    async def send(self, message: Data | bytearray | memoryview | Iterable[Data] | AsyncIterable[Data], *,
                   compress: bool = True) -> None:
        """Send a message.

        A ``str`` is sent as a text message, a bytes-like object as a binary
        message; an iterable or async iterable of ``str`` (or of bytes-like
        objects) is sent as one fragmented message, one frame per item.

        Waits while the transport's write buffer is above ``write_limit``.

        Args:
            message: the message.
            compress: ``False`` sends this message uncompressed on a
                connection that negotiated permessage-deflate (RSV1 clear; the
                compression context of the next messages is unchanged), e.g.
                for data that is already compressed. No effect otherwise.

        Raises:
            ConnectionClosedOK: the connection was closed cleanly.
            ConnectionClosedError: the connection was closed with an error.
            TypeError: for another type, or an iterable mixing ``str`` and
                bytes (see :data:`wskit.duties.FRAGMENT_FAILURE` for what
                happens to the connection then).
        """
        while self._sending_fragments is not None:
            await asyncio.shield(self._sending_fragments)
        try:
            data = self._message_frames(message, compress)
        except InvalidState:
            raise await self._closed_error() from None
        if data is None:
            await self._send_fragments(message, compress)
            return
        self._write_message(data)
        if self._paused_writing:
            await self._drain()

    def send_nowait(self, message: Data | bytearray | memoryview, *, compress: bool = True) -> None:
        """Send a message now, without waiting: for :attr:`on_message` callbacks.

        The message is written to the transport at once; what the socket
        does not take is buffered by the transport. Called from the
        :attr:`on_message` callback, the replies to the messages of one read
        leave together in one write, and a reply that leaves the write
        buffer above ``write_limit`` stops reading from the peer until the
        buffer drains (as for the Pongs answering its Pings): a peer that
        sends without reading cannot make the buffer grow. Anywhere else,
        prefer :meth:`send`, which waits while the buffer is full, or
        :func:`wskit.asyncio.broadcast`, which skips the connections whose
        buffer is.

        Args:
            message: a ``str`` (a text message) or a bytes-like object (a
                binary message).
            compress: as for :meth:`send`.

        Raises:
            ConnectionClosedOK: the connection is closing or closed cleanly.
            ConnectionClosedError: the connection is closing or closed with
                an error.
            ConcurrencyError: a fragmented message is being sent by
                :meth:`send` (its frames cannot be interleaved).
            TypeError: ``message`` is neither ``str`` nor bytes-like.
        """
        if self._sending_fragments is not None:
            raise ConcurrencyError("send_nowait() cannot send while send() is sending a fragmented message")
        try:
            data = self._message_frames(message, compress)
        except InvalidState:
            raise self._closed_exception() from None
        if data is None:
            raise TypeError(f"send_nowait() takes a str or a bytes-like object, not {type(message).__name__}")
        self._write_message(data)
        if self._paused_writing:
            self._pause_for_replies()

    def _write_message(self, data: list[bytes]) -> None:
        """Write a message's frames; while replies are held (_hold_replies), a small one joins them."""
        if self._corking and len(data) == 1 and len(data[0]) < _CORK_FRAME_SIZE:
            corked = self._corked
            corked.append(data[0])  # written when _hold_replies' call returns
            if len(corked) < _CORK_FRAMES:
                return
            data = []  # or now, when that makes _CORK_FRAMES
        self._write(data)

    def _message_frames(self, message: Any, compress: bool) -> list[bytes] | None:
        """The frames of one unfragmented message (``None``: not a str or bytes-like object).

        Raises:
            InvalidState: the connection is not open.
            ProtocolError: an extension or plugin failed to build it (our
                Close, 1011, is on its way).
        """
        protocol = self.protocol
        try:
            if type(message) is str:
                return protocol.send_text(message) if compress else protocol.send_text(message, compress=False)
            if isinstance(message, (bytes, bytearray, memoryview)):
                return protocol.send_binary(message) if compress else protocol.send_binary(message, compress=False)
            if isinstance(message, str):
                return protocol.send_text(str(message), compress=compress)
        except InvalidState:  # (a ProtocolError too) for the caller to report
            raise
        except ProtocolError as exc:  # an extension or plugin failed to build it: our Close (1011) goes out
            self._build_failed(exc)
            raise
        return None  # an iterable: fragments (or a type send() rejects)

    def _frame(self, opcode: int, part: Any, fin: bool, compress: bool = True) -> list[bytes]:
        protocol = self.protocol
        if opcode == Opcode.CONT:
            return protocol.send_continuation(part, fin)  # compressed as the first fragment was
        if opcode == Opcode.TEXT:
            return protocol.send_text(part, fin, compress=compress)
        return protocol.send_binary(part, fin, compress=compress)

    async def _send_fragments(self, message: Any, compress: bool = True) -> None:
        # The rule (wskit.duties.FRAGMENT_FAILURE): items are read one ahead.
        if not is_fragment_source(message):
            raise send_type_error(message)
        if hasattr(message, "__aiter__"):
            iterator = message.__aiter__()

            async def next_chunk() -> Any:
                try:
                    return await iterator.__anext__()
                except StopAsyncIteration:
                    return _END
        else:
            sync_iterator = iter(message)

            async def next_chunk() -> Any:
                return next(sync_iterator, _END)

        first = await next_chunk()
        if first is _END:
            return  # nothing to send for an empty iterable
        text = fragment_kind(first, 0)
        done: asyncio.Future[None] = self._loop.create_future()
        self._sending_fragments = done
        opcode: int = Opcode.TEXT if text else Opcode.BINARY
        try:
            previous = first
            index = 0
            while True:
                chunk = await next_chunk()
                if chunk is not _END:
                    index += 1
                    fragment_kind(chunk, index, text)
                try:
                    data = self._frame(opcode, previous, chunk is _END, compress)
                except InvalidState:
                    raise await self._closed_error() from None
                self._write(data)
                if chunk is _END:
                    break
                opcode = Opcode.CONT
                previous = chunk
                if self._paused_writing:
                    await self._drain()
            if self._paused_writing:
                await self._drain()
        except ProtocolError as exc:  # an extension or plugin failed to build a fragment: our Close (1011)
            self._build_failed(exc)
            raise
        except (Exception, asyncio.CancelledError) as exc:
            if opcode == Opcode.CONT and not isinstance(exc, WebSocketClosed) and not self._lost:
                # A fragment left: the message cannot be completed.
                self._fail(*FRAGMENT_FAILURE)
            raise
        finally:
            self._sending_fragments = None
            done.set_result(None)

    async def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:
        """Send a Ping.

        Args:
            data: the payload (a ``str`` is UTF-8 encoded, at most 125
                bytes); by default 4 random bytes.

        Returns:
            A future resolved with the round-trip time in seconds when the
            matching Pong (or a Pong answering a later Ping) arrives:
            ``latency = await (await ws.ping())``.

        Raises:
            ConnectionClosed: the connection is closed.
            ConcurrencyError: a ping with the same data awaits its pong.
        """
        fut: asyncio.Future[float] = self._loop.create_future()
        try:
            out = self._duties.send_ping(data, time.monotonic(), fut)
        except InvalidState:
            raise await self._closed_error() from None
        self._write(out)
        if self._paused_writing:
            await self._drain()
        return fut

    async def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong (a heartbeat that expects no answer).

        Raises:
            ConnectionClosed: the connection is closed.
        """
        try:
            out = self.protocol.send_pong(data)
        except InvalidState:
            raise await self._closed_error() from None
        self._write(out)
        if self._paused_writing:
            await self._drain()

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Perform the closing handshake and wait until the transport is closed.

        Waits at most ``close_timeout`` for the peer; then the transport is
        aborted. Calling it on a closed connection does nothing.

        Args:
            code: the close code (RFC 6455 §7.4).
            reason: the close reason, at most 123 bytes in UTF-8.

        Raises:
            ProtocolError: ``code`` may not be sent, or ``reason`` is too long.
        """
        if not self._lost:
            if self.protocol.state is State.CONNECTING:
                if self._transport is not None:
                    self._transport.close()
            elif self._holding:
                self._release()  # the application is done answering: the held Close goes out now
            else:
                release = self._duties.start_close(code, reason)
                if release is not None:
                    if self._debug:
                        self.logger.debug("> CLOSE %s %r", code, reason)
                    self._act(release)
            self._start_close_timer()
        await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (the transport is gone).

        If the peer started the closing handshake while received messages
        were still waiting for :meth:`recv`, our Close answer was held back
        so that the application could reply to them first; waiting here
        means it will not, so the answer goes out now.
        """
        if self._holding:
            self._release()
        await asyncio.shield(self._closed)


_END = object()


def create_server_function(loop: asyncio.AbstractEventLoop, kwargs: Mapping[str, Any]) -> Callable[..., Any]:
    """Return the function that creates a TCP server on ``loop`` with ``kwargs``.

    ``loop.create_server``, or, when the optional package ``aiofastnet`` is
    installed (``pip install 'wskit[speedups]'``), its ``create_server``
    bound to ``loop``: the same server on compiled transports, which cut
    the event loop's share of a small message's CPU time by more than half
    (``docs/performance.md``). aiofastnet is not used for TLS (``ssl``),
    for keywords it does not take, or when ``WSKIT_NO_SPEEDUPS`` is set in
    the environment (which also turns off the C accelerator).
    """
    fast = _aiofastnet_create_server()
    if fast is None or kwargs.get("ssl") is not None or not fast[1].issuperset(kwargs):
        return loop.create_server
    return functools.partial(fast[0], loop)


@functools.cache
def _aiofastnet_create_server() -> tuple[Callable[..., Any], frozenset[str]] | None:
    """aiofastnet's ``create_server`` and the keywords it takes, or ``None``."""
    if os.environ.get("WSKIT_NO_SPEEDUPS"):
        return None
    try:
        import aiofastnet
    except ImportError:
        return None
    create: Callable[..., Any] = aiofastnet.create_server
    return create, frozenset(inspect.signature(create).parameters) - {"loop", "protocol_factory"}


class _Messages:
    """The ``async for`` iterator of a connection (cheaper than an async generator)."""

    __slots__ = ("_next",)

    def __init__(self, connection: Connection) -> None:
        self._next = connection._next_message

    def __aiter__(self) -> _Messages:
        return self

    def __anext__(self) -> Coroutine[Any, Any, Data]:
        return self._next(None, True)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("recv() timed out"))
