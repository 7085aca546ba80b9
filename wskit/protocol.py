"""The sans-I/O WebSocket protocol objects and their events.

:class:`Protocol` turns received bytes into events and calls into bytes to
send; it never touches a socket. :class:`ClientProtocol` and
:class:`ServerProtocol` add the opening handshake. The state machine they
follow is declared in ``specs/connection.yaml`` (see :mod:`wskit.statemachine`).

This module gathers them, with :class:`Side`, :class:`State` and the events,
under one public import path.
"""

from __future__ import annotations

from ._protocol import LoggerLike, Protocol, Side
from .client import ClientProtocol
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
from .server import ServerProtocol
from .statemachine import State

__all__ = [
    "Protocol",
    "ClientProtocol",
    "ServerProtocol",
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
    "LoggerLike",
]
