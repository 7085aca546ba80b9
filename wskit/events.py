"""Events returned by :meth:`wskit.Protocol.receive_data` and ``receive_eof``.

Events are small immutable objects; compare them with ``==`` or match on
their type. Users never subclass them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._headermap import Headers

__all__ = [
    "Event",
    "TextMessage",
    "BinaryMessage",
    "Ping",
    "Pong",
    "Close",
    "ConnectionClosed",
    "Request",
    "Response",
]


class Event:
    """Base class of every protocol event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TextMessage(Event):
    """A complete text message (reassembled from its fragments)."""

    data: str


@dataclass(frozen=True, slots=True)
class BinaryMessage(Event):
    """A complete binary message (reassembled from its fragments)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Ping(Event):
    """A Ping control frame; answer it with ``send_pong(event.data)``."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong(Event):
    """A Pong control frame."""

    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Close(Event):
    """The peer's Close frame.

    A Close frame without payload gives ``Close(1005, "")``. Answer it with
    ``send_close(event.code, event.reason)``.
    """

    code: int = 1005
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The transport is closed (``receive_eof`` was called).

    ``exception`` is set when the connection ended with an error.
    """

    exception: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Request(Event):
    """An HTTP/1.1 upgrade request received by a server.

    Attributes:
        path: the request target (path and query string).
        headers: the request headers, a case-insensitive multi-mapping.
        method: the request method (always ``"GET"`` once validated).
    """

    path: str
    headers: Headers
    method: str = "GET"


@dataclass(frozen=True, slots=True)
class Response(Event):
    """An HTTP/1.1 response received by a client (or built by a server).

    Attributes:
        status_code: the HTTP status code (101 for a successful upgrade).
        reason_phrase: the reason phrase of the status line.
        headers: the response headers, a case-insensitive multi-mapping.
        body: the response body (up to a limit), ``b""`` for a 101.
    """

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = field(default=b"")
