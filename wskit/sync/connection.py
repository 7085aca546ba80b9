"""A WebSocket connection over a blocking socket, driven by threads.

:class:`Connection` holds a sans-I/O :class:`~wskit.protocol.Protocol` and a
connected socket. It owns:

* one reader thread that reads the socket, feeds ``protocol.receive_data``,
  answers Pings and Closes, and puts messages in a bounded queue: when
  ``max_queue`` messages wait, the reader stops reading the socket (that is
  the receive-side backpressure; TCP flow control then slows the peer). The
  messages of one read are queued together, with one wake-up, so the queue
  may exceed ``max_queue`` by what one read held; a ``recv`` that finds a
  message takes it without waking anyone, unless the reader waits for room;
* an optional keepalive thread that pings every ``ping_interval`` seconds and
  fails the connection with 1011 when no Pong arrives within ``ping_timeout``.

Writes are serialized by a *writer token* (a lock held while bytes are
written). Data messages wait for the token; control frames written by the
reader or the keepalive thread never wait: when another thread holds the
token, they are appended to a pending list that the holder flushes before
giving the token back. Bytes always leave in the order the protocol built
them, and the reader never blocks on a slow writer.

Every protocol decision stays in the core (:class:`~wskit.protocol.Protocol`)
and in the close-handshake and ping policy every I/O layer shares
(:class:`wskit.duties.Duties`); this module only moves bytes and time.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
import uuid
from _thread import LockType
from _thread import allocate_lock as _allocate_lock
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from .._io import resolve_logger
from ..defaults import CLOSE_TIMEOUT, MAX_QUEUE, PING_INTERVAL, PING_TIMEOUT, WRITE_LIMIT
from ..duties import (
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
from ..events import BinaryMessage, Close, Event, Ping, Pong, Request, Response, TextMessage
from ..exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidState, ProtocolError, WebSocketClosed
from ..frames import CloseCode
from ..mask import send_nowait
from ..protocol import Protocol, State

__all__ = ["Connection", "Data", "PingEvent"]

Data = str | bytes
"""A received message: ``str`` for text, ``bytes`` for binary."""

_READ_SIZE = 65536
# Writes up to 64 KiB first try a send that keeps the GIL (wskit._speedups):
# with many busy connections, socket.sendall() hands the GIL to another
# thread on every call and waiting to get it back costs far more than the
# write. What the socket does not take at once goes through sendall().
_send_nowait = send_nowait
_NOWAIT_MAX = 65536
# broadcast()'s write that never blocks (plain sockets, POSIX).
_DONTWAIT: int | None = getattr(socket, "MSG_DONTWAIT", None)
# Marker in the pending-write list: half-close the socket (send FIN) here.
_FIN = None


_Self = TypeVar("_Self", bound="Connection")

class Connection:
    """A WebSocket connection after a successful opening handshake.

    Not built directly: :func:`wskit.sync.connect` and
    :func:`wskit.sync.serve` create :class:`~wskit.sync.client.ClientConnection`
    and :class:`~wskit.sync.server.ServerConnection` objects.

    Args:
        sock: the connected socket (plain or TLS), in blocking mode.
        protocol: the sans-I/O protocol (a client or server protocol).
        max_queue: incoming messages buffered before the reader stops reading
            the socket; ``None`` for no limit.
        write_limit: blocking writes never buffer in Python, so ``send``
            returns once the kernel took the bytes (its socket buffer is the
            write buffer). Control frames built while another thread writes
            wait in a list for it; when the Pongs answering the peer's Pings
            make that list exceed ``write_limit``, the reader thread stops
            reading until the writer has taken them (a peer that sends Pings
            without reading cannot make it grow).
        close_timeout: how long :meth:`close` waits for the closing handshake
            and for the peer to close TCP, in seconds (``None``: forever).
        ping_interval: seconds between keepalive Pings; ``None`` disables
            keepalive.
        ping_timeout: seconds to wait for the keepalive Pong before failing
            the connection with 1011; ``None`` never fails.
        logger: the base logger; a :class:`logging.LoggerAdapter` carrying the
            connection id wraps it (defaults to ``wskit.sync``).
        conn_id: the connection's id (a fresh uuid4 by default).
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol: Protocol,
        *,
        max_queue: int | None = MAX_QUEUE,
        write_limit: int = WRITE_LIMIT,
        close_timeout: float | None = CLOSE_TIMEOUT,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float | None = PING_TIMEOUT,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        conn_id: uuid.UUID | None = None,
    ) -> None:
        check_options(max_queue=max_queue, write_limit=write_limit, ping_interval=ping_interval,
                      ping_timeout=ping_timeout, close_timeout=close_timeout)
        self.socket = sock
        self.protocol = protocol
        self._duties = Duties(protocol)  # called with _proto_lock held
        self.id: uuid.UUID = conn_id if conn_id is not None else uuid.uuid4()
        self.logger: logging.LoggerAdapter[Any] = (
            logger if isinstance(logger, logging.LoggerAdapter)
            else make_logger(logger, self.id)
        )
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.request: Request | None = None
        """The opening handshake's request (the one sent by a client, received by a server)."""
        self.response: Response | None = None
        """The opening handshake's response (received by a client, sent by a server)."""
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # as asyncio does: no Nagle delay for a message after a small write
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Plain sockets get small writes through _send_nowait (GIL kept).
        self._send_nowait = _send_nowait if type(sock) is socket.socket else None
        # None when the peer is already gone (getpeername() fails on a reset socket).
        self.remote_address: Any = None
        self.local_address: Any = None
        with contextlib.suppress(OSError):
            self.remote_address = sock.getpeername()
        with contextlib.suppress(OSError):
            self.local_address = sock.getsockname()

        self._proto_lock = threading.Lock()  # guards protocol calls and _pending
        self._write_lock = threading.Lock()  # the writer token
        self._pending: list[bytes | None] = []
        # Messages broadcast() handed over while another thread held the
        # writer token: that thread builds and writes them before giving the
        # token back (at most about write_limit bytes wait here).
        self._backlog: list[Callable[[Protocol], list[bytes]]] = []
        self._backlog_size = 0
        self._pending_size = 0  # bytes in _pending
        # Notified (with _proto_lock) when the token holder takes _pending, or drops it.
        self._pending_taken = threading.Condition(self._proto_lock)
        self._messages: collections.deque[Data] = collections.deque()
        # Guards _messages, _ended, _closing_local, _holding and the waiter state
        # below. Hot paths use it directly: a recv() that finds a message
        # takes it without any wake-up; blocked recv() callers each wait on
        # their own lock (in _recv_waiters), the reader on _room.
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)  # only to wait for a held Close to be released
        self._closing_local = False  # we started closing: stop limiting the queue
        self._ended = False  # the reader thread finished: no more messages
        self._received = 0  # messages queued so far
        self._recv_waiting = 0  # threads blocked in recv() on an empty queue
        self._recv_waiters: collections.deque[LockType] = collections.deque()  # their locks, oldest first
        self._room = threading.Lock()  # locked; released to wake the reader waiting for queue room
        self._room.acquire()
        self._reader_waiting = False  # the reader waits on _room (released at most once per wait)
        # Our Close (the answer to the peer's, or our failure Close) is held
        # in _duties until the app has taken the messages that came before it.
        self._holding = False
        self._ended_event = threading.Event()
        self._sock_closed = False
        self._closed_exc: WebSocketClosed | None = None
        self._keepalive_event: threading.Event | None = None
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._keepalive: threading.Thread | None = None
        self._debug = self.logger.isEnabledFor(logging.DEBUG)

    # -- public attributes ----------------------------------------------------

    @property
    def state(self) -> State:
        """The protocol state (CONNECTING, OPEN, CLOSING, CLOSED)."""
        if self._ended:
            return State.CLOSED
        return self.protocol.state

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or ``None``."""
        return self.protocol.subprotocol

    @property
    def close_code(self) -> int | None:
        """The close code: the peer's, ours when we failed the connection
        (e.g. 1011 after a keepalive timeout), 1006 after an abrupt
        disconnect; ``None`` while the connection is open."""
        exc = self._closed_exc
        return self._duties.close_code if exc is None else exc.code

    @property
    def close_reason(self) -> str | None:
        """The close reason going with :attr:`close_code`."""
        exc = self._closed_exc
        return self._duties.close_reason if exc is None else exc.reason

    @property
    def latency(self) -> float:
        """Round-trip time of the last Ping answered by a Pong, in seconds
        (``0.0`` until one was answered)."""
        return self._duties.latency

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state.value}>"

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close(CloseCode.INTERNAL_ERROR, "internal error")

    # -- receiving ---------------------------------------------------------

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Messages received before the connection closed are returned first;
        then every call raises the closing exception.

        Args:
            timeout: seconds to wait; ``None`` waits forever, ``0`` polls.
            decode: ``None`` (default): text as ``str``, binary as
                ``bytes``; ``True``: binary decoded from UTF-8 to ``str``
                too; ``False``: text as its UTF-8 ``bytes`` too (as
                python-websockets' ``recv(decode=...)``).

        Raises:
            TimeoutError: no message arrived within ``timeout``.
            ConnectionClosedOK: the connection was closed cleanly.
            ConnectionClosedError: the connection was closed with an error
                (1006 when it was lost without a closing handshake).
            UnicodeDecodeError: ``decode=True`` and a binary message is not UTF-8.
        """
        if decode is not None:
            message = self.recv(timeout)
            if type(message) is (str if decode else bytes):
                return message
            return message.decode() if decode else message.encode()  # type: ignore[union-attr]
        if self._holding:
            with self._mutex:
                answered = not self._messages  # every earlier message was handed over
            if answered:
                self._flush_held()
        with self._mutex:
            if self._messages:
                return self._take()
            if not self._ended:
                return self._recv_wait(timeout)
        raise self._closed()

    def _take(self) -> Data:
        """Take the next queued message (``_mutex`` held, queue not empty)."""
        message = self._messages.popleft()
        if self._reader_waiting:
            self._wake_reader()
        return message

    def _recv_wait(self, timeout: float | None) -> Data:
        """The queue is empty: wait for a message (called and returns with ``_mutex`` held)."""
        mutex = self._mutex
        messages = self._messages
        deadline = None if timeout is None else time.monotonic() + timeout
        self._recv_waiting += 1
        try:
            while True:
                if messages:
                    return self._take()
                if self._ended:
                    break
                remaining = -1.0
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"no message received within {timeout} s")
                waiter = _allocate_lock()
                waiter.acquire()
                self._recv_waiters.append(waiter)
                woken = False
                mutex.release()
                try:
                    woken = waiter.acquire(True, remaining)
                finally:
                    mutex.acquire()
                    if not woken:  # timed out (or interrupted): stop taking wake-ups
                        try:
                            self._recv_waiters.remove(waiter)
                        except ValueError:  # woken just after: pass the wake-up on
                            if messages and self._recv_waiters:
                                self._recv_waiters.popleft().release()
        finally:
            self._recv_waiting -= 1
        raise self._closed()

    def _wake_reader(self) -> None:
        """Wake the reader waiting for queue room if there is room (``_mutex`` held)."""
        limit = self.max_queue
        if limit is None or len(self._messages) < limit or self._closing_local:
            self._reader_waiting = False
            self._room.release()

    def __iter__(self) -> Iterator[Data]:
        """Iterate over incoming messages; stop when the connection closes cleanly.

        Raises:
            ConnectionClosedError: the connection was closed with an error.
        """
        while True:
            try:
                yield self.recv()
            except ConnectionClosedOK:
                return

    # -- sending -----------------------------------------------------------

    def send(self, message: Data | bytearray | memoryview | Iterable[str | bytes | bytearray | memoryview], *,
             compress: bool = True) -> None:
        """Send a message; safe to call from several threads.

        Args:
            message: a ``str`` (text message), a bytes-like object (binary
                message), or an iterable of ``str`` or of bytes-like parts,
                sent as the fragments of one message (all parts of one type;
                the message is not held in memory whole).
            compress: ``False`` sends this message uncompressed on a
                connection that negotiated permessage-deflate (RSV1 clear; the
                compression context of the next messages is unchanged), e.g.
                for data that is already compressed. No effect otherwise.

        Blocks while the kernel's socket buffer is full (send-side
        backpressure).

        Raises:
            ConnectionClosedOK: the connection is closed (or closing) cleanly.
            ConnectionClosedError: the connection is closed with an error.
            TypeError: for another type, or an iterable mixing str and bytes
                (see :data:`wskit.duties.FRAGMENT_FAILURE` for what happens
                to the connection then).
        """
        build: Callable[[Any], list[bytes]]
        payload: Any = message  # matches build: checked just below
        if isinstance(message, str):
            build = self.protocol.send_text
        elif isinstance(message, (bytes, bytearray, memoryview)):
            build = self.protocol.send_binary
        elif is_fragment_source(message):
            self._send_fragments(message, compress)  # type: ignore[arg-type]
            return
        else:
            raise send_type_error(message)
        if not compress:
            build = partial(build, compress=False)
        # Wait for the writer token, build the frames, write them.
        write_lock = self._write_lock
        write_lock.acquire()
        try:
            if self._sock_closed:
                raise self._closed()
            with self._proto_lock:
                data = build(payload)
        except InvalidState as exc:
            write_lock.release()
            raise self._on_invalid_state(exc) from exc
        except ProtocolError as exc:  # an extension or plugin failed: the peer gets our Close (1011)
            with self._proto_lock:
                failure = self._failure_frames(exc)
            with contextlib.suppress(WebSocketClosed):
                self._write_holding_token(failure)
            raise
        except BaseException:
            write_lock.release()
            raise
        self._write_holding_token(data)

    def ping(self, data: str | bytes | None = None) -> PingEvent:
        """Send a Ping.

        Args:
            data: the payload (at most 125 bytes; a ``str`` is UTF-8 encoded);
                ``None`` picks 4 random bytes.

        Returns:
            A :class:`PingEvent` (a :class:`threading.Event`), set when the
            matching Pong arrives (a Pong also acknowledges every earlier
            Ping); its ``latency`` is then the round-trip time in seconds:
            ``event = ws.ping(); event.wait(5); print(event.latency)``.

        Raises:
            ConnectionClosed: the connection is closed.
            ConcurrencyError: a Ping with the same payload is already waiting.
        """
        event = PingEvent()

        def build() -> list[bytes]:
            return self._duties.send_ping(data, time.monotonic(), event)

        self._send_control_checked(build)
        return event

    def pong(self, data: str | bytes = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat).

        Raises:
            ConnectionClosed: the connection is closed.
        """
        self._send_control_checked(lambda: self.protocol.send_pong(data))

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Perform the closing handshake and close the socket.

        Waits up to ``close_timeout`` for the peer's Close and for the end of
        the TCP connection, then closes the socket anyway. Idempotent; does
        not raise when the connection is already closed.

        Args:
            code: the close code (RFC 6455 §7.4).
            reason: the close reason, at most 123 UTF-8 bytes.

        Raises:
            ProtocolError: the code may not be sent or the reason is too long.
        """
        self._start_close(code, reason)
        self.wait_closed(self.close_timeout)
        if not self._ended_event.is_set():
            if self._debug:
                self.logger.debug("! close timeout: closing the socket")
            self._abort()
        self._join()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection is closed (the socket is closed).

        Returns:
            ``True`` if it is closed, ``False`` if ``timeout`` expired.
        """
        return self._ended_event.wait(timeout)

    # -- internals: writing ---------------------------------------------------

    def _closed(self) -> WebSocketClosed:
        exc = self._closed_exc
        if exc is None:  # still closing: report what we know so far
            code = self._duties.close_code or CloseCode.ABNORMAL_CLOSURE
            return ConnectionClosedError(code, self._duties.close_reason or "", "connection is closing")
        return exc

    def _on_invalid_state(self, exc: InvalidState) -> WebSocketClosed:
        """Sending is not possible (the connection is closing): wait for the end of the closing, then report it.

        Called by the application's threads only (the reader sends through ``_send_control``).
        """
        self._ended_event.wait(self.close_timeout)
        closed = self._closed()
        closed.__cause__ = exc
        return closed

    def _send_fragments(self, parts: Iterable[Any], compress: bool = True) -> None:
        """Send an iterable's parts as the fragments of one message (RFC 6455 §5.4).

        The writer token is held for the whole message, so other threads'
        messages cannot interleave; Pings, Pongs and Closes queued meanwhile
        go out between fragments, as control frames may.
        """
        iterator = iter(parts)
        try:
            previous = next(iterator)
        except StopIteration:
            return  # nothing to send
        # The rule (wskit.duties.FRAGMENT_FAILURE): items are read one ahead.
        text = fragment_kind(previous, 0)
        self._write_lock.acquire()
        if self._sock_closed:
            self._write_lock.release()
            raise self._closed()
        started = False
        error: BaseException | None = None
        try:
            index = 0
            for part in iterator:
                index += 1
                fragment_kind(part, index, text)
                self._write_fragment(previous, text, started, fin=False, compress=compress)
                started = True
                previous = part
            self._write_fragment(previous, text, started, fin=True, compress=compress)
        except WebSocketClosed:
            raise  # a write failed: _write_holding_token gave the token back
        except BaseException as exc:  # the iterable's, a wrong item, or InvalidState
            error = exc
        self._give_back_token()
        if error is None:
            return
        if isinstance(error, InvalidState):
            raise self._on_invalid_state(error) from error
        if started and not isinstance(error, ProtocolError):  # (after a ProtocolError, our Close is out)
            self._fail(*FRAGMENT_FAILURE)  # a fragment left: the message cannot be completed
        raise error

    def _write_fragment(self, part: Any, text: bool, started: bool, fin: bool, compress: bool = True) -> None:
        failure: ProtocolError | None = None
        with self._proto_lock:
            try:
                if started:  # compressed, or not, as the first fragment was
                    data: list[bytes | None] = list(self.protocol.send_continuation(part, fin))
                elif text:
                    data = list(self.protocol.send_text(part, fin, compress=compress))
                else:
                    data = list(self.protocol.send_binary(part, fin, compress=compress))
            except InvalidState:
                raise
            except ProtocolError as exc:  # an extension or plugin failed: the peer gets our Close (1011)
                failure = exc
                data = self._failure_frames(exc)
        self._write_holding_token(data, keep=True)
        if failure is not None:
            raise failure

    def _send_control_checked(self, build: Callable[[], list[bytes]]) -> None:
        try:
            self._send_control(build)
        except InvalidState as exc:
            raise self._on_invalid_state(exc) from exc

    def _send_control(self, build: Callable[[], list[bytes | None]] | Callable[[], list[bytes]],
                      reply: bool = False) -> None:
        """Build frames and write them, or queue them if another thread is writing.

        ``reply``: an automatic reply built by the reader thread; if the queue
        is over ``write_limit``, wait until the writer took it (the peer is
        not reading: stop reading it too).
        """
        with self._proto_lock:
            if self._sock_closed:
                raise self._closed()
            data: list[bytes | None] = list(build())
            if not data:
                return
            if not self._write_lock.acquire(blocking=False):
                self._pending.extend(data)  # the token holder writes them next
                self._pending_size += sum(len(chunk) for chunk in data if chunk is not _FIN)
                if reply:
                    while self._pending_size > self.write_limit and not self._sock_closed:
                        self._pending_taken.wait()
                return
        self._write_holding_token(data)

    def _write_holding_token(self, data: Sequence[bytes | None], keep: bool = False) -> None:
        """Write ``data`` then whatever was queued meanwhile; give the token
        back unless ``keep`` (a fragmented message continues)."""
        sock = self.socket
        send_nowait = self._send_nowait
        released = False
        try:
            while True:
                for chunk in data:
                    if chunk is _FIN:
                        _shutdown(sock, socket.SHUT_WR)
                    elif send_nowait is not None and len(chunk) <= _NOWAIT_MAX:
                        sent = send_nowait(sock, chunk)
                        if sent < len(chunk):  # the socket's buffer is full: block for the rest
                            sock.sendall(memoryview(chunk)[sent:])
                    else:
                        sock.sendall(chunk)
                with self._proto_lock:
                    data = self._pending
                    if not data and not keep and self._backlog:
                        data = self._build_backlog()
                    if not data:
                        if not keep:  # else still ours: the caller goes on writing
                            self._write_lock.release()
                        released = True
                        return
                    self._pending = []
                    self._pending_size = 0
                    self._pending_taken.notify_all()
        except OSError as exc:
            with self._proto_lock:
                self._pending = []
                self._pending_size = 0
                self._pending_taken.notify_all()
            if self._debug:
                self.logger.debug("! write failed: %r", exc)
            self._abort()
            self._write_lock.release()  # (still held: it is given back only just before returning)
            released = True
            # Wait for the reader to record how the connection ended.
            if threading.current_thread() is not self._reader:
                self._ended_event.wait(self.close_timeout)
            closed = self._closed()
            raise closed from exc
        finally:
            if not released:
                self._write_lock.release()

    # -- internals: broadcast ---------------------------------------------------

    def _write_nowait(self, build: Callable[[Protocol], list[bytes]], size: int) -> bool | None:
        """Send a message built by ``build(protocol)`` without ever blocking (for ``broadcast``).

        With the writer token free, the message is built and written with a
        non-blocking send; what the socket does not take at once (and, on a
        TLS socket, the whole write) is finished by a short-lived thread
        holding the token. With the token held by another thread, the
        message waits in a backlog that thread writes before giving the
        token back, unless about ``write_limit`` bytes wait there already.

        Args:
            build: returns the bytes to write, called under the protocol lock.
            size: the message's size, counted against ``write_limit``.

        Returns:
            ``None`` when the connection is not open (nothing sent), or
            when building the message failed (an extension or plugin
            raised: the connection is failed with 1011),
            ``False`` when it is over its write limit (nothing sent),
            ``True`` when the message was written or handed over.
        """
        with self._proto_lock:
            if self._sock_closed or self._ended or self.protocol.state is not State.OPEN:
                return None
            if self._backlog or not self._write_lock.acquire(blocking=False):
                if self._backlog and self._backlog_size + size > self.write_limit:
                    return False
                self._backlog.append(build)
                self._backlog_size += size
                return True
            try:  # (open, and the token was free: no fragmented message is under way)
                data = build(self.protocol)
            except ProtocolError as exc:  # an extension or plugin failed: the peer gets our Close (1011)
                self._send_nowait_holding_token(self._failure_frames(exc))
                return None  # (not open any more)
        self._send_nowait_holding_token(data)
        return True

    def _send_nowait_holding_token(self, data: Sequence[bytes | None]) -> None:
        rest: list[bytes | None] = list(data)
        sock = self.socket
        send_nowait = self._send_nowait
        if _DONTWAIT is not None and type(sock) is socket.socket:
            try:
                while rest:
                    chunk = rest[0]
                    if chunk is _FIN:  # (after a failure's Close) the thread below half-closes
                        break
                    if send_nowait is not None and len(chunk) <= _NOWAIT_MAX:
                        sent = send_nowait(sock, chunk)  # keeps the GIL: much cheaper with many threads
                    else:
                        sent = sock.send(chunk, _DONTWAIT)
                    if sent < len(chunk):
                        rest[0] = chunk[sent:]
                        break
                    del rest[0]
            except BlockingIOError:
                pass
            except OSError:
                pass  # the thread below meets the error again and reports it as any write does
            if not rest:
                with self._proto_lock:
                    if not self._pending and not self._backlog:
                        self._write_lock.release()
                        return
        threading.Thread(target=self._flush_in_background, args=(rest,), name=f"wskit-writer-{self.id}",
                         daemon=True).start()

    def _flush_in_background(self, data: list[bytes | None]) -> None:
        try:
            self._write_holding_token(data)
        except WebSocketClosed:
            pass

    def _build_backlog(self) -> list[bytes | None]:
        """Build the backlog's messages, in order (``_proto_lock`` and the writer token held)."""
        builds = self._backlog
        self._backlog = []
        self._backlog_size = 0
        out: list[bytes | None] = []
        for build in builds:
            if self._sock_closed or self.protocol.state is not State.OPEN:
                break  # closing: the rest is not sent, as broadcast() skips connections that are not open
            try:  # (open, and no fragmented message is under way: the token holder is between messages)
                out.extend(build(self.protocol))
            except ProtocolError as exc:  # an extension or plugin failed: our Close (1011) follows what went before
                out.extend(self._failure_frames(exc))
                break
        return out

    def _failure_frames(self, exc: ProtocolError) -> list[bytes | None]:
        """What to write after building a message failed (``_proto_lock`` held).

        The protocol logged the extension's or plugin's error and put our
        Close (1011, or the code of a :class:`ProtocolError` raised on
        purpose) in ``exc.to_send``; then the closing goes on as after a
        failure on the reading side.
        """
        release = self._duties.failed(exc, False)
        assert release is not None  # (nothing undelivered: never held)
        return self._frames(release)

    def _give_back_token(self) -> None:
        """Give the writer token back, after writing the backlog if there is one."""
        with self._proto_lock:
            if not self._backlog or self._sock_closed:
                self._write_lock.release()
                return
        try:
            self._write_holding_token([])
        except WebSocketClosed:
            pass

    def _start_close(self, code: int, reason: str) -> None:
        """Send our Close frame (if allowed) without waiting for anything."""
        with self._mutex:
            self._closing_local = True
            if self._reader_waiting:
                self._wake_reader()  # stop limiting the queue
        if self._holding:
            self._flush_held()  # answer the peer's Close (or send our failure Close) now
            return

        def build() -> list[bytes | None]:
            release = self._duties.start_close(code, reason)
            return [] if release is None else self._frames(release)

        try:
            self._send_control(build)
        except WebSocketClosed:
            pass

    def _frames(self, release: Release) -> list[bytes | None]:
        """What to write for a :class:`~wskit.duties.Release` (``_FIN``: half-close here)."""
        data, after = release
        if after is After.CLOSE or after is After.HALF_CLOSE:
            # This side closes TCP first: FIN, then read until the peer's EOF.
            return [*data, _FIN]
        return list(data)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection from the layer (keepalive timeout): Close, then abort."""
        with self._cond:
            self._holding = False
            self._cond.notify_all()
        with self._proto_lock:
            frames = [] if self._sock_closed else self._duties.fail(code, reason)
            got_token = bool(frames) and self._write_lock.acquire(blocking=False)
        if got_token:
            try:
                # Best effort: the peer may be gone; never block here.
                if _wait_io(self.socket, write=True, timeout=0):
                    self.socket.send(b"".join(frames))
            except OSError:
                pass
            finally:
                self._write_lock.release()
        self.logger.debug("! failing the connection with %d: %s", code, reason)
        self._abort()

    def _abort(self) -> None:
        """Shut the socket down: wakes the reader and any blocked writer."""
        _shutdown(self.socket, socket.SHUT_RDWR)

    # -- internals: threads ---------------------------------------------------

    def _start(self, initial: list[Event] | None = None, error: ProtocolError | None = None) -> None:
        """Start the reader (and keepalive) threads.

        Args:
            initial: events the handshake already produced (frames that
                followed it), handled first.
            error: a protocol failure the handshake's leftover caused.
        """
        self._reader = threading.Thread(target=self._run_reader, args=(initial or [], error),
                                        name=f"wskit-reader-{self.id}", daemon=True)
        self._reader.start()
        if self.ping_interval is not None:
            self._keepalive = threading.Thread(target=self._run_keepalive, name=f"wskit-keepalive-{self.id}",
                                               daemon=True)
            self._keepalive.start()

    def _join(self, timeout: float | None = None) -> None:
        current = threading.current_thread()
        for thread in (self._reader, self._keepalive):
            if thread is not None and thread is not current:
                thread.join(timeout)

    def _run_reader(self, initial: list[Event], error: ProtocolError | None) -> None:
        sock = self.socket
        recv = sock.recv
        recv_into = sock.recv_into
        receive_data = self.protocol.receive_data
        receive_buffer = self.protocol.receive_buffer
        receive_into = self.protocol.receive_into
        proto_lock = self._proto_lock
        messages = self._messages
        deadline: float | None = None
        cause: BaseException | None = None
        try:
            if error is not None:
                deadline = self._handle_failure(error)
            elif initial:
                deadline = self._handle_events(initial)
            while True:
                limit = self.max_queue
                if limit is not None and len(messages) >= limit:
                    self._wait_room()  # backpressure: no reading while the queue is full
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not _wait_io(sock, write=False, timeout=remaining):
                        if self._debug:
                            self.logger.debug("! timed out waiting for the peer to close TCP")
                        break
                into = receive_buffer()  # a large frame being gathered: read straight into it
                data = b""
                try:
                    if into is None:
                        data = recv(_READ_SIZE)
                        size = len(data)
                    else:
                        size = recv_into(into)
                except OSError as exc:
                    cause = exc
                    size = 0
                if not size:
                    break
                try:
                    with proto_lock:
                        events = receive_data(data) if into is None else receive_into(size)
                except ProtocolError as exc:
                    deadline = self._handle_failure(exc)
                    continue
                if events:
                    end = self._handle_events(events)
                    if end is not None and deadline is None:
                        deadline = end
        except Exception as exc:  # a bug must not leave the connection hanging
            cause = exc
            self.logger.error("unexpected error in the reader thread", exc_info=True)
        finally:
            self._finish(cause)

    def _handle_events(self, events: list[Event]) -> float | None:
        """Handle received events; return a deadline once the close handshake is done.

        Messages are queued together (one wake-up for the batch); the ones
        before a control frame are queued before it is handled.
        """
        deadline: float | None = None
        batch: list[Data] = []
        for event in events:
            if isinstance(event, TextMessage | BinaryMessage):
                batch.append(event.data)
                continue
            if batch:
                self._enqueue(batch)
                batch = []
            if isinstance(event, Ping):
                data = event.data
                try:
                    self._send_control(lambda data=data: self._duties.answer_ping(data), reply=True)
                except WebSocketClosed:
                    pass
            elif isinstance(event, Pong):
                self._acknowledge(event.data)
            elif isinstance(event, Close):
                deadline = self._handle_close()
        if batch:
            self._enqueue(batch)
        return deadline

    def _handle_close(self) -> float:
        """The peer's Close arrived: answer it, maybe after the messages before it."""
        with self._mutex:
            self._closing_local = True  # nothing more will arrive: release the queue limit
            undelivered = bool(self._messages)
        # RFC 6455 §5.5.1: we may finish sending before answering. The
        # application takes (and answers) the messages that came before the
        # Close; recv() sends the answer once they are handed over, close()
        # at once, this thread after close_timeout.
        self._answer(lambda: self._duties.close_received(undelivered), lambda: bool(self._messages))
        return time.monotonic() + (self.close_timeout if self.close_timeout is not None else 1e9)

    def _handle_failure(self, exc: ProtocolError) -> float:
        """The peer violated the protocol: handle what came before, send our Close."""
        if self._debug:
            self.logger.debug("! protocol error: %s", exc)
        with self._mutex:  # the app may no longer read: do not limit the queue
            self._closing_local = True
        self._handle_events(exc.events)

        def answering() -> bool:  # (_mutex held)
            # Messages received before the violation that the application
            # has not answered yet: queued, or taken by a thread not back in recv().
            return bool(self._received) and bool(self._messages or not self._recv_waiting)

        with self._mutex:
            undelivered = answering()
        self._answer(lambda: self._duties.failed(exc, undelivered), answering)
        return time.monotonic() + (self.close_timeout if self.close_timeout is not None else 1e9)

    def _answer(self, decide: Callable[[], Release | None], still: Callable[[], bool]) -> None:
        """Write our Close now, or hold it while ``still()`` (at most close_timeout)."""
        holding = False

        def build() -> list[bytes | None]:
            nonlocal holding
            release = decide()
            if release is None:
                holding = True
                return []
            return self._frames(release)

        try:
            self._send_control(build)
        except WebSocketClosed:
            return
        if holding:
            with self._cond:
                self._holding = True
                if still():  # else the application took them meanwhile
                    self._cond.wait_for(lambda: not self._holding, self.close_timeout)
            self._flush_held()

    def _flush_held(self) -> None:
        """Write the held-back Close, once (from the reader, recv() or close())."""
        with self._cond:
            if not self._holding:
                return
            self._holding = False
            self._cond.notify_all()

        def build() -> list[bytes | None]:
            release = self._duties.release()
            return [] if release is None else self._frames(release)

        try:
            self._send_control(build)
        except WebSocketClosed:
            pass

    def _enqueue(self, batch: list[Data]) -> None:
        """Queue messages (reader thread); wake one blocked recv() caller per message."""
        with self._mutex:
            self._messages.extend(batch)
            self._received += len(batch)
            waiters = self._recv_waiters
            for _ in range(min(len(batch), len(waiters))):
                waiters.popleft().release()

    def _wait_room(self) -> None:
        """Backpressure (reader thread): wait while ``max_queue`` messages wait.

        Stops waiting once the application took a message, or when we close
        (nothing limits the queue any more then).
        """
        mutex = self._mutex
        mutex.acquire()
        try:
            while True:
                limit = self.max_queue
                if limit is None or len(self._messages) < limit or self._closing_local:
                    break
                self._reader_waiting = True
                mutex.release()
                try:
                    self._room.acquire()
                finally:
                    mutex.acquire()
        finally:
            mutex.release()

    def _acknowledge(self, data: bytes) -> None:
        with self._proto_lock:
            done = self._duties.pong_received(data, time.monotonic())
        for event, rtt in done:
            event.latency = rtt
            event.set()

    def _finish(self, cause: BaseException | None) -> None:
        """The reader is done: record how the connection ended, close the socket."""
        with self._proto_lock:
            self.protocol.receive_eof()  # the handshake is over: this raises nothing
            self._closed_exc = self._closing_exception(cause)
        self._abort()
        self._stop.set()
        ka = self._keepalive_event
        if ka is not None:
            ka.set()
        # Writers blocked in sendall fail fast after the shutdown; then close.
        with self._write_lock:
            with self._proto_lock:
                self._sock_closed = True
                self._pending = []
                self._pending_size = 0
                self._pending_taken.notify_all()
            self.socket.close()
        with self._mutex:
            self._ended = True
            waiters = self._recv_waiters
            while waiters:
                waiters.popleft().release()
        if self._debug:
            self.logger.debug("= connection closed: %s", self._closed_exc)
        self._ended_event.set()

    def _closing_exception(self, cause: BaseException | None) -> WebSocketClosed:
        exc = self._duties.closed_exception()
        if exc.__cause__ is None:
            exc.__cause__ = cause
        return exc

    def _run_keepalive(self) -> None:
        interval = self.ping_interval
        assert interval is not None
        while not self._stop.wait(interval):
            # A Ping refused because the connection is closing: the reader
            # ends it soon, and this loop with it.
            with contextlib.suppress(WebSocketClosed, InvalidState, ProtocolError):
                event = self.ping()
                self._keepalive_event = event  # set by the reader when it ends (after it sets _stop)
                timeout = self.ping_timeout
                if (timeout is not None and not self._stop.is_set()
                        and not event.wait(timeout) and not self._stop.is_set()):
                    self._fail(*KEEPALIVE_FAILURE)
                    return


class PingEvent(threading.Event):
    """What :meth:`Connection.ping` returns: set when the Pong arrives.

    Attributes:
        latency: the round-trip time in seconds once set (``None`` before).
    """

    latency: float | None = None


def make_logger(logger: logging.Logger | None, conn_id: uuid.UUID) -> logging.LoggerAdapter[Any]:
    """Return the per-connection logger adapter (it carries the connection id)."""
    return logging.LoggerAdapter(resolve_logger(logger, "wskit.sync"), {"connection_id": str(conn_id)})


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        # The plain socket's shutdown, also for TLS sockets (whose own
        # shutdown() would drop the TLS object under a thread using it).
        socket.socket.shutdown(sock, how)
    except OSError:
        pass


def _wait_io(sock: socket.socket, *, write: bool, timeout: float) -> bool:
    """Wait until ``sock`` is readable (or writable); ``False`` on timeout."""
    if not write and isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True  # TLS bytes already decrypted and buffered (pending() never raises)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE if write else selectors.EVENT_READ)
            return bool(selector.select(timeout))
    except (OSError, ValueError):
        return True  # closed: let the next operation report it

