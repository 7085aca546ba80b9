"""What an I/O layer owes the peer beyond the application's messages, without I/O.

Every I/O layer (:mod:`wskit.asyncio`, :mod:`wskit.sync`, and any later one)
holds a :class:`~wskit.protocol.Protocol` and one :class:`Duties` object. The
protocol turns bytes into events and calls into bytes; :class:`Duties` decides
what the layer does about the control events, from the protocol's public
facts (``close_answer_may_wait``, ``may_send_close``, ``closed_cleanly``,
``closes_transport_first``, ...):

* a Ping is answered with a Pong carrying its data, except after our Close
  (:meth:`Duties.answer_ping`);
* a Pong acknowledges the Ping with the same data and every Ping sent before
  it; a Ping whose payload is already waiting for its pong is refused with
  :class:`~wskit.exceptions.ConcurrencyError` (:meth:`Duties.send_ping`,
  :meth:`Duties.pong_received`);
* the peer's Close is answered with a Close echoing its code (1000 when the
  code may not be sent back), and the answer waits until the application has
  taken the messages that arrived before the peer's Close
  (:meth:`Duties.close_received`, :meth:`Duties.release`);
* after a protocol violation, the replies to the events completed before it go
  out first, then our Close (``exc.to_send``), held like the answer above while
  messages received before it are undelivered (:meth:`Duties.failed`);
* who closes the TCP connection, and when (:class:`After`);
* a failure the layer itself detects (keepalive timeout, a fragmented message
  that cannot be completed) closes with its own code, which then overrides the
  one the protocol recorded (:meth:`Duties.fail`);
* how the connection ended: :meth:`Duties.closed_exception` gives
  :class:`~wskit.exceptions.ConnectionClosedOK` after a complete closing
  handshake with code 1000, 1001 or 1005 and no failure, otherwise
  :class:`~wskit.exceptions.ConnectionClosedError`.

The layer keeps what is I/O: reading, writing, timers, queues, tasks and
threads. Times are passed in as numbers (any monotonic clock, in seconds);
this module never reads a clock. :class:`Duties` is not thread-safe: a
threaded layer calls it under the lock that guards its protocol.

Argument checks shared by the layers live here too (:func:`check_options`),
and so do the rules of a message sent from an iterable
(:func:`fragment_kind`, :data:`FRAGMENT_FAILURE`).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._protocol import Protocol
from .exceptions import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    ProtocolError,
    WebSocketClosed,
)
from .frames import CloseCode

__all__ = [
    "After",
    "Duties",
    "CALLBACK_FAILURE",
    "FRAGMENT_FAILURE",
    "KEEPALIVE_FAILURE",
    "OK_CODES",
    "Release",
    "check_options",
    "fragment_kind",
    "is_fragment_source",
    "send_type_error",
]

OK_CODES = frozenset((CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD))
"""Close codes of a clean end, after a complete closing handshake (RFC 6455 §7.4.1)."""

KEEPALIVE_FAILURE = (CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
"""Code and reason when a keepalive Ping got no Pong within ``ping_timeout``."""

CALLBACK_FAILURE = (CloseCode.INTERNAL_ERROR, "error in the on_message callback")
"""Code and reason when the application's ``on_message`` callback raised (the error is logged)."""

FRAGMENT_FAILURE = (CloseCode.INTERNAL_ERROR, "error while sending a fragmented message")
"""Code and reason when a message sent from an iterable cannot be completed.

The rule for ``send(iterable)``, the same in every layer: items are read one
ahead of the frame being written, so every item is checked before the
fragment it follows leaves. A wrong item (not ``str`` or bytes-like, or a
``str`` among bytes-like items or the reverse), an exception from the iterable
or a cancellation raises to the caller. If no fragment left yet (``send(["a",
b"b"])``), nothing was sent and the connection stays open; otherwise the
message cannot be completed, and the connection is failed with this code
(the peer never receives a truncated message).
"""


class After(enum.Enum):
    """What the layer does with the transport once it wrote a :class:`Release`'s bytes."""

    NOTHING = "nothing"
    """Nothing yet: the closing handshake goes on."""

    WAIT = "wait"
    """Wait for the peer to close the TCP connection; abort it after ``close_timeout``."""

    CLOSE = "close"
    """Close the TCP connection (this side closes it first, RFC 6455 §7.1.1);
    abort it if it is not gone after ``close_timeout``."""

    HALF_CLOSE = "half-close"
    """Send EOF and keep reading (the core discards what comes) until the peer
    closes its end; abort after ``close_timeout``. After a protocol failure, so
    that the peer reads our Close before the end of the stream."""


class Release(NamedTuple):
    """Bytes to write now, in order, then what to do with the transport."""

    data: list[bytes]
    after: After


_ANSWER = object()  # the held duty is the answer to the peer's Close


def check_options(
    *,
    max_queue: int | None,
    write_limit: int,
    ping_interval: float | None,
    ping_timeout: float | None,
    close_timeout: float | None,
) -> None:
    """Check an I/O layer's connection options (the same rule in every layer).

    Args:
        max_queue: ``None`` or at least 1.
        write_limit: at least 0.
        ping_interval: ``None`` (no keepalive) or more than 0.
        ping_timeout: ``None`` (never fail) or more than 0.
        close_timeout: ``None`` (wait forever) or more than 0.

    Raises:
        ValueError: naming the option and the value given.
    """
    if max_queue is not None and max_queue < 1:
        raise ValueError(f"max_queue must be None or >= 1, got {max_queue}")
    if write_limit < 0:
        raise ValueError(f"write_limit must be >= 0, got {write_limit}")
    for name, value in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout),
                        ("close_timeout", close_timeout)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be None or > 0, got {value}")


def send_type_error(message: object) -> TypeError:
    """Return the error for a ``send()`` argument that is no message."""
    return TypeError(f"send() takes str, bytes-like, or an iterable of them, not {type(message).__name__}")


def is_fragment_source(message: object) -> bool:
    """Whether ``send(message)`` sends ``message``'s items as one fragmented message."""
    return not isinstance(message, Mapping) and (hasattr(message, "__iter__") or hasattr(message, "__aiter__"))


def fragment_kind(part: object, index: int, text: bool | None = None) -> bool:
    """Check one item of a message sent from an iterable.

    Args:
        part: the item.
        index: its position (0 for the first), for the error message.
        text: the kind of the first item (``None`` when ``part`` is the first).

    Returns:
        ``True`` for a ``str`` item (a text message), ``False`` for bytes-like.

    Raises:
        TypeError: ``part`` is neither, or not of the first item's kind.
    """
    if isinstance(part, str):
        kind = True
    elif isinstance(part, (bytes, bytearray, memoryview)):
        kind = False
    else:
        raise TypeError(f"send(): fragment {index} is a {type(part).__name__}; expected str or bytes-like")
    if text is not None and kind is not text:
        raise TypeError(f"send(): fragment {index} is {'str' if kind else 'bytes-like'} but fragment 0 is "
                        f"{'str' if text else 'bytes-like'}: a fragmented message is all str or all bytes-like")
    return kind


class Duties:
    """The close-handshake and ping policy of one connection (no I/O).

    Args:
        protocol: the connection's sans-I/O protocol.

    Attributes:
        protocol: the protocol.
        latency: round-trip time of the last Ping answered, in seconds
            (``0.0`` until one was answered).
    """

    __slots__ = ("protocol", "latency", "_pings", "_override", "_held")

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.latency = 0.0
        # payload -> (time sent, the layer's waiter), in the order sent
        self._pings: dict[bytes, tuple[float, Any]] = {}
        self._override: tuple[int, str] | None = None
        self._held: object = None  # _ANSWER, a failure's to_send, or None

    # -- pings ---------------------------------------------------------------

    def answer_ping(self, data: bytes) -> list[bytes]:
        """Answer a received Ping (RFC 6455 §5.5.2).

        Returns:
            The Pong to write; nothing once our Close is out.
        """
        try:
            return self.protocol.send_pong(data)
        except InvalidState:
            return []

    def send_ping(self, data: str | bytes | bytearray | memoryview | None, now: float,
                  waiter: Any = None) -> list[bytes]:
        """Build a Ping and record it as waiting for its Pong.

        Args:
            data: the payload (``str`` is UTF-8 encoded, at most 125 bytes);
                ``None`` for 4 random bytes that no waiting Ping carries.
            now: the time it is sent.
            waiter: anything the layer wants back from :meth:`pong_received`
                (a future, an event; ``None`` for its own keepalive Ping).

        Returns:
            The Ping frame to write.

        Raises:
            ConcurrencyError: a Ping with the same payload waits for its Pong.
            InvalidState: no Ping may be sent now (the connection is closing).
            ProtocolError: the payload is longer than 125 bytes.
        """
        pings = self._pings
        if data is None:
            payload = b""
            while not payload or payload in pings:  # draw until no waiting Ping carries it
                payload = os.urandom(4)
        else:
            payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            if payload in pings:
                raise ConcurrencyError(f"a ping with payload {payload!r} is already waiting for its pong")
        out = self.protocol.send_ping(payload)
        pings[payload] = (now, waiter)
        return out

    def pong_received(self, data: bytes, now: float) -> list[tuple[Any, float]]:
        """Acknowledge the Ping a received Pong answers, and every earlier one.

        RFC 6455 §5.5.3: a Pong may answer only the most recent of several
        Pings. An unsolicited Pong acknowledges nothing.

        Args:
            data: the Pong's payload.
            now: the time it was received.

        Returns:
            ``(waiter, round-trip time)`` of each acknowledged Ping, oldest
            first; :attr:`latency` is the answered Ping's round-trip time.
        """
        pings = self._pings
        if data not in pings:
            return []
        done: list[tuple[Any, float]] = []
        while True:  # ends at ``data``, which is waiting
            key = next(iter(pings))
            sent, waiter = pings.pop(key)
            done.append((waiter, now - sent))
            if key == data:
                self.latency = now - sent
                return done

    def drop_pings(self) -> list[Any]:
        """Forget every waiting Ping (the connection is gone); return their waiters."""
        waiters = [waiter for _, waiter in self._pings.values()]
        self._pings.clear()
        return waiters

    # -- closing -------------------------------------------------------------

    @property
    def holding(self) -> bool:
        """Whether our Close (an answer or a failure's) waits for :meth:`release`."""
        return self._held is not None

    def close_received(self, undelivered: bool) -> Release | None:
        """The peer's Close was received; the events before it are handled.

        Args:
            undelivered: whether messages received before it still wait for
                the application.

        Returns:
            What to do now; ``None`` when the answer is held (RFC 6455 §5.5.1:
            the application may answer those messages first): call
            :meth:`release` once the application took them, when it closes,
            or after ``close_timeout``.
        """
        self._held = _ANSWER
        if undelivered and self.protocol.close_answer_may_wait:
            return None
        return self.release()

    def failed(self, exc: ProtocolError, undelivered: bool) -> Release | None:
        """The peer violated the protocol (``receive_data`` raised ``exc``).

        Handle ``exc.events`` first (queue the messages, write the answers to
        its Pings): they go out before our Close.

        Args:
            exc: the protocol's failure.
            undelivered: whether messages received before it still wait for
                the application (or the application is answering them).

        Returns:
            What to do now; ``None`` when our Close is held as in
            :meth:`close_received`.
        """
        self._held = exc.to_send
        if undelivered and exc.to_send:
            return None
        return self.release()

    def release(self) -> Release | None:
        """Send the held Close now.

        Returns:
            ``None`` when nothing was held; otherwise our Close (echoing the
            peer's code and reason, or the failure's) and what to do with
            the transport after it.
        """
        held = self._held
        if held is None:
            return None
        self._held = None
        protocol = self.protocol
        if held is _ANSWER:
            data: list[bytes] = []
            if protocol.may_send_close:
                # RFC 6455 §5.5.1: answer the peer's Close, echoing its code and
                # reason (both were checked when received, so they may be sent).
                data = protocol.send_close(protocol.close_code or CloseCode.NO_STATUS_RCVD,
                                           protocol.close_reason or "")
            # RFC 6455 §7.1.1: the server closes the TCP connection first.
            return Release(data, After.CLOSE if protocol.closes_transport_first else After.WAIT)
        return Release(held, After.HALF_CLOSE if protocol.closes_transport_first else After.WAIT)  # type: ignore[arg-type]

    def start_close(self, code: int, reason: str) -> Release | None:
        """The application closes the connection.

        Returns:
            Our Close (or the held one, which answers the peer's first) and
            what to do next; ``None`` when a Close was already sent.

        Raises:
            ProtocolError: ``code`` may not be sent, or ``reason`` is too long.
        """
        if self._held is not None:
            return self.release()
        protocol = self.protocol
        if protocol.may_send_close:
            return Release(protocol.send_close(code, reason), After.WAIT)
        return None

    def fail(self, code: int, reason: str) -> list[bytes]:
        """The layer fails the connection (keepalive timeout, fragmented send).

        ``code`` and ``reason`` become the connection's, overriding the
        protocol's (the first such failure wins). Write the returned bytes if
        possible, then close the transport.

        Returns:
            Our Close, if one may still be sent.
        """
        if self._override is None:
            self._override = (code, reason)
        held = self._held
        self._held = None
        if isinstance(held, list):
            return held  # a failure's Close, not sent yet
        protocol = self.protocol
        if protocol.may_send_close:
            return protocol.send_close(code, reason)
        return []

    # -- how it ended ----------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The connection's close code: the layer's failure's, else the protocol's."""
        override = self._override
        return self.protocol.close_code if override is None else override[0]

    @property
    def close_reason(self) -> str | None:
        """The close reason going with :attr:`close_code`."""
        override = self._override
        return self.protocol.close_reason if override is None else override[1]

    @property
    def clean(self) -> bool:
        """Whether the connection ended cleanly: a complete closing handshake,
        no failure (the protocol's or the layer's), code 1000, 1001 or 1005."""
        return (self._override is None and self.protocol.closed_cleanly
                and self.protocol.close_code in OK_CODES)

    def closed_exception(self) -> WebSocketClosed:
        """The exception telling the application how the connection ended.

        Returns:
            :class:`~wskit.exceptions.ConnectionClosedOK` when :attr:`clean`,
            else :class:`~wskit.exceptions.ConnectionClosedError` (code 1006
            when no code is known), caused by the protocol's failure if any.
        """
        code = self.close_code
        reason = self.close_reason or ""
        exc: WebSocketClosed
        if self.clean:
            exc = ConnectionClosedOK(code, reason)
        else:
            exc = ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE if code is None else code, reason)
        exc.__cause__ = self.protocol.failure
        return exc
