"""asyncio WebSocket clients and servers built on the sans-I/O core.

>>> async with serve(handler, "127.0.0.1", 8765) as server:   # doctest: +SKIP
...     await server.serve_forever()
>>> async with connect("ws://127.0.0.1:8765") as ws:          # doctest: +SKIP
...     await ws.send("hello"); print(await ws.recv())
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
from .client import ClientConnection, connect, unix_connect
from .connection import Connection, Data
from .server import Server, ServerConnection, basic_auth, broadcast, route, serve, unix_serve

__all__ = [
    "connect",
    "unix_connect",
    "serve",
    "unix_serve",
    "broadcast",
    "route",
    "basic_auth",
    "Connection",
    "ClientConnection",
    "ServerConnection",
    "Server",
    "Data",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "WebSocketClosed",
    "ProxyError",
    "RedirectError",
    "InvalidHandshake",
]
