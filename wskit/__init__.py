"""wskit: WebSocket (RFC 6455) and permessage-deflate (RFC 7692) for Python.

The heart is a sans-I/O core: :class:`Protocol` (and its
:class:`ClientProtocol` / :class:`ServerProtocol` subclasses) turn bytes into
events and calls into bytes, never touching a socket.
"""

from __future__ import annotations

from .defaults import VERSION
from .events import (
    BinaryMessage,
    Close,
    ConnectionClosed,
    Event,
    Ping,
    Pong,
    Request,
    Response,
    TextMessage,
)
from .exceptions import (
    InvalidHandshake,
    InvalidState,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    WSKitError,
)
from .hookspecs import hookimpl
from .protocol import ClientProtocol, Protocol, ServerProtocol, Side, State

__version__ = VERSION

__all__ = [
    "ClientProtocol",
    "ServerProtocol",
    "Protocol",
    "Side",
    "State",
    "Event",
    "TextMessage",
    "BinaryMessage",
    "Ping",
    "Pong",
    "Close",
    "ConnectionClosed",
    "Request",
    "Response",
    "WSKitError",
    "ProtocolError",
    "InvalidState",
    "PayloadTooBig",
    "InvalidHandshake",
    "NegotiationError",
    "hookimpl",
    "__version__",
]
