"""Blocking WebSocket client: :func:`connect` and :func:`unix_connect`."""

from __future__ import annotations

import logging
import os
import socket
import ssl as ssl_module
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._io import ConnectionOptions, resolve_manager, with_config
from ..client import ClientProtocol, HeadersLike
from ..defaults import (
    CLOSE_TIMEOUT,
    MAX_QUEUE,
    MAX_SIZE,
    OPEN_TIMEOUT,
    PING_INTERVAL,
    PING_TIMEOUT,
    USER_AGENT,
    WRITE_LIMIT,
)
from ..duties import check_options
from ..events import Event, Request, Response
from ..exceptions import ConnectionClosedError, InvalidHandshake, ProtocolError
from ..handshake import parse_uri
from ..http11 import HTTPLimits
from ..plugins.deflate import io_extensions
from .connection import Connection, make_logger

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config
    from ..plugin import PluginManager
    from ..statemachine import StateSpec

__all__ = ["ClientConnection", "connect", "unix_connect"]


class ClientConnection(Connection):
    """A client connection; see :class:`~wskit.sync.connection.Connection`.

    Created by :func:`connect`. ``request`` is the request we sent and
    ``response`` the server's 101 response.
    """

    protocol: ClientProtocol

    def __enter__(self) -> ClientConnection:
        return self


@with_config("sync_client")
def connect(
    uri: str | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    origin: str | None = None,
    extensions: Sequence[Any] | None = None,
    subprotocols: Sequence[str] | None = None,
    extra_headers: HeadersLike | None = None,
    user_agent: str | None = USER_AGENT,
    compression: str | None = "deflate",
    open_timeout: float | None = OPEN_TIMEOUT,
    ping_interval: float | None = PING_INTERVAL,
    ping_timeout: float | None = PING_TIMEOUT,
    close_timeout: float | None = CLOSE_TIMEOUT,
    max_size: int | None = MAX_SIZE,
    max_queue: int | None = MAX_QUEUE,
    write_limit: int = WRITE_LIMIT,
    max_fragment_size: int | None = None,
    logger: logging.Logger | None = None,
    plugins: Sequence[object] | None = None,
    plugin_manager: PluginManager | None = None,
    spec: str | os.PathLike[str] | StateSpec | None = None,
    limits: HTTPLimits | None = None,
    config: Config | None = None,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri`` and return it once the handshake succeeded.

    Use it as a context manager to close the connection at the end::

        with connect("ws://127.0.0.1:8765/") as ws:
            ws.send("hello")
            print(ws.recv())

    Args:
        uri: the ``ws://`` or ``wss://`` URI.
        sock: an already connected socket to use instead of opening one.
        ssl: the TLS context (``wss://`` without one uses
            :func:`ssl.create_default_context`).
        server_hostname: the TLS server name (defaults to the URI's host).
        origin: the ``Origin`` header.
        extensions: extension factories to offer, in preference order
            (``[]`` with ``compression=None``: offer none).
        subprotocols: subprotocols to offer, in preference order.
        extra_headers: more request headers.
        user_agent: the ``User-Agent`` header (``None`` for none).
        compression: ``"deflate"`` (default) offers permessage-deflate: a
            permessage-deflate factory (the plugin manager's settings) is added at the end of ``extensions`` unless one
            named ``permessage-deflate`` is there; with ``extensions=None``
            the offer is what the plugins provide (permessage-deflate,
            unless the plugin manager disables that plugin). ``None`` adds
            nothing.
        open_timeout: seconds for TCP connect, TLS and the opening handshake
            together; ``None`` waits forever.
        ping_interval: seconds between keepalive Pings (``None``: no keepalive).
        ping_timeout: seconds to wait for a keepalive Pong before failing
            the connection with 1011 (``None``: never).
        close_timeout: seconds :meth:`~Connection.close` waits for the
            closing handshake and the end of TCP.
        max_size: largest incoming message, in bytes (``None``: no limit).
        max_queue: incoming messages buffered before reading pauses
            (``None``: no limit).
        write_limit: accepted for symmetry with the asyncio layer (blocking
            writes have no user-space buffer).
        max_fragment_size: split outgoing messages in frames of this size.
        logger: base logger (default ``wskit.sync``).
        plugins: plugin objects to add for this connection's protocol.
        plugin_manager: the :class:`~wskit.plugin.PluginManager` of the core
            (default: the shared one).
        spec: the connection state-machine spec (a path or a loaded
            :class:`~wskit.statemachine.StateSpec`; default: the shipped one).
        limits: limits on the HTTP response's size.
        config: a configuration loaded by ``wskit.config.load``: every key
            it sets applies unless the same argument is passed in the call
            (an explicit argument wins even when equal to its default);
            ``client.uri`` is used when ``uri`` is not given.

    Returns:
        The open connection.

    Raises:
        InvalidURI: ``uri`` is not a valid WebSocket URI.
        InvalidHandshake: the server refused or answered badly (``.response``
            holds its response, e.g. a 401 or 403).
        TimeoutError: ``open_timeout`` expired.
        ConnectionClosedError: the connection was lost during the handshake (1006).
        OSError: the TCP connection or the TLS handshake failed.
    """
    if uri is None:
        raise TypeError("connect() needs a URI (or client.uri in the configuration file)")
    wsuri = parse_uri(uri)
    if ssl is not None and not wsuri.secure:
        raise ValueError(f"ssl= was given for the non-TLS URI {uri!r}: use wss://")
    if wsuri.secure and ssl is None:
        ssl = ssl_module.create_default_context()
    manager = resolve_manager(plugins, plugin_manager)
    options = ConnectionOptions.build(
        extensions=io_extensions(compression, extensions, "client", manager), subprotocols=subprotocols,
        max_size=max_size, max_fragment_size=max_fragment_size, limits=limits,
        plugin_manager=manager, spec=spec, open_timeout=open_timeout, close_timeout=close_timeout,
        ping_interval=ping_interval, ping_timeout=ping_timeout, max_queue=max_queue, write_limit=write_limit)
    check_options(max_queue=max_queue, write_limit=write_limit, ping_interval=ping_interval,
                  ping_timeout=ping_timeout, close_timeout=close_timeout)
    conn_id = uuid.uuid4()
    adapter = make_logger(logger, conn_id)
    protocol = ClientProtocol(uri, origin=origin, extra_headers=extra_headers, user_agent=user_agent,
                              **options.protocol_kwargs(adapter))
    deadline = _deadline(open_timeout)
    if sock is None:
        sock = socket.create_connection((wsuri.host, wsuri.port), timeout=_remaining(deadline))
    try:
        if ssl is not None:
            sock.settimeout(_remaining(deadline))
            sock = ssl.wrap_socket(sock, server_hostname=server_hostname or wsuri.host,
                                   do_handshake_on_connect=False)
            sock.settimeout(_remaining(deadline))
            sock.do_handshake()
        leftover, error = _handshake(sock, protocol, deadline)
        sock.settimeout(None)
        connection = ClientConnection(sock, protocol, logger=adapter, conn_id=conn_id,
                                      **options.connection_kwargs())
    except BaseException:
        sock.close()
        raise
    connection.response = protocol.response
    if protocol.request is not None:
        connection.request = Request(protocol.wsuri.path, protocol.request)
    connection._start(leftover, error)
    return connection


def unix_connect(path: str, uri: str | None = None, **kwargs: Any) -> ClientConnection:
    """Connect to a WebSocket server listening on a Unix socket.

    Args:
        path: the socket's file system path.
        uri: the URI to put in the request (default: ``client.uri`` of
            ``config=`` if it sets one, else ``ws://localhost/``; ``wss://``
            enables TLS).
        kwargs: the other arguments of :func:`connect`.
    """
    config = kwargs.get("config")
    if uri is None and config is not None and config.is_set("client.uri"):
        uri = config.get("client.uri")
    if uri is None:
        uri = "wss://localhost/" if kwargs.get("ssl") is not None else "ws://localhost/"
    if kwargs.get("sock") is not None:
        raise TypeError("unix_connect() opens its own socket; use connect(sock=...) for a connected one")
    if "open_timeout" in kwargs:
        open_timeout = kwargs["open_timeout"]
    else:
        open_timeout = config.get("timeouts.open") if config is not None else 10
    deadline = _deadline(open_timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_remaining(deadline))
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return connect(uri, sock=sock, **kwargs)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out during the opening handshake")
    return remaining


def _handshake(
    sock: socket.socket, protocol: ClientProtocol, deadline: float | None
) -> tuple[list[Event], ProtocolError | None]:
    """Send the request, read the response; return the events that followed it."""
    sock.settimeout(_remaining(deadline))
    for data in protocol.connect():
        sock.sendall(data)
    while True:
        sock.settimeout(_remaining(deadline))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("timed out during the opening handshake") from None
        except ConnectionError as exc:
            raise ConnectionClosedError(1006, "", f"connection lost during the opening handshake: {exc}") from exc
        if not data:
            try:
                protocol.receive_eof()
            except InvalidHandshake as exc:
                if exc.response is None:
                    raise ConnectionClosedError(
                        1006, "", "connection closed during the opening handshake") from exc
                raise
            response = protocol.response
            if response is not None and response.status_code != 101:
                raise _rejected(response)
            raise ConnectionClosedError(1006, "", "connection closed during the opening handshake")
        try:
            events = protocol.receive_data(data)
        except InvalidHandshake as exc:
            if exc.response is not None and exc.response.status_code != 101:
                raise _rejected(exc.response) from exc
            raise
        except ProtocolError as exc:  # a bad frame right after a good 101
            return [e for e in exc.events if not isinstance(e, Response)], exc
        if events:
            return events[1:], None


def _rejected(response: Response) -> InvalidHandshake:
    exc = InvalidHandshake(
        f"server rejected the WebSocket connection: HTTP {response.status_code} {response.reason_phrase}",
        response=response, status=response.status_code)
    return exc
