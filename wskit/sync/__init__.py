"""Blocking WebSocket client and server built on threads.

A thin I/O layer over wskit's sans-I/O core: each connection has a reader
thread (and a keepalive thread when ``ping_interval`` is set); every
protocol decision is the core's. See ``docs/sync.md``.

Example::

    from wskit.sync import connect

    with connect("ws://127.0.0.1:8765/") as ws:
        ws.send("hello")
        print(ws.recv())
"""

from __future__ import annotations

from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    ProxyError,
    RedirectError,
    WebSocketClosed,
)
from .client import ClientConnection, Connect, Reconnecting, connect, unix_connect
from .connection import Connection, Data, PingEvent
from .server import (
    Handler,
    ProcessRequest,
    ProcessResponse,
    Server,
    ServerConnection,
    basic_auth,
    broadcast,
    route,
    serve,
    unix_serve,
)

__all__ = [
    "connect",
    "unix_connect",
    "serve",
    "unix_serve",
    "broadcast",
    "route",
    "basic_auth",
    "PingEvent",
    "ProcessResponse",
    "Connection",
    "ClientConnection",
    "Connect",
    "Reconnecting",
    "ServerConnection",
    "Server",
    "Data",
    "Handler",
    "ProcessRequest",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "WebSocketClosed",
    "ProxyError",
    "RedirectError",
    "InvalidHandshake",
]
