"""asyncio WebSocket client: :func:`connect` and :func:`unix_connect`."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as ssl_module
import uuid
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

from .._io import ConnectionOptions, loop_keywords, resolve_manager, with_config
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
from ..events import Request, Response
from ..exceptions import ConnectionClosedError, InvalidHandshake, ProtocolError
from ..handshake import parse_uri
from ..http11 import HTTPLimits
from ..plugins.deflate import io_extensions
from ..protocol import ClientProtocol
from .connection import Connection, LoggerLike, make_logger

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config
    from ..plugin import PluginManager
    from ..statemachine import StateSpec

__all__ = ["ClientConnection", "connect", "unix_connect"]


class ClientConnection(Connection):
    """A client connection returned by :func:`connect`.

    See :class:`~wskit.asyncio.connection.Connection` for the messaging API.
    """

    protocol: ClientProtocol

    def __init__(self, protocol: ClientProtocol, **kwargs: Any) -> None:
        super().__init__(protocol, **kwargs)
        self._handshake: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._write(self.protocol.connect())

    def _opening_data(self, data: bytes) -> None:
        try:
            events = self.protocol.receive_data(data)
        except InvalidHandshake as exc:
            self._handshake_failed(exc)
            return
        except ProtocolError as exc:  # frames right after the 101 were invalid
            self._opened()
            self._protocol_error(exc)
            return
        if not events:
            return
        self._opened()
        if len(events) > 1:
            self._handle_events(events[1:])

    def _opened(self) -> None:
        super()._opened()
        if not self._handshake.done():
            self._handshake.set_result(None)

    def _handshake_failed(self, exc: BaseException) -> None:
        if self._debug:
            self.logger.debug("! opening handshake failed: %s", exc)
        if not self._handshake.done():
            self._handshake.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    def _opening_lost(self, error: ProtocolError | None) -> None:
        if self._handshake.done():
            return
        exc: BaseException = error if error is not None else ConnectionClosedError(
            1006, "", "connection closed during the opening handshake")
        self._handshake.set_exception(exc)

    @property
    def request(self) -> Request | None:
        """The opening handshake's request (``path`` and ``headers``)."""
        headers = self.protocol.request
        return None if headers is None else Request(self.protocol.wsuri.path, headers)

    @property
    def response(self) -> Response | None:
        """The server's handshake response."""
        return self.protocol.response


class connect:  # lowercase: used like a function, as in python-websockets
    """Open a WebSocket client connection.

    Use it as ``ws = await connect(uri)`` or ``async with connect(uri) as ws:``
    (the connection is closed on exit).

    Args:
        uri: the ``ws://`` or ``wss://`` URI.
        origin: the ``Origin`` header.
        subprotocols: subprotocols to offer, in preference order.
        extra_headers: more request headers.
        user_agent: the ``User-Agent`` header (``None`` for none).
        compression: ``"deflate"`` (default) offers permessage-deflate: a
            permessage-deflate factory (the plugin manager's settings) is added at the end of ``extensions`` unless one
            named ``permessage-deflate`` is there; with ``extensions=None``
            the offer is what the plugins provide (permessage-deflate,
            unless the plugin manager disables that plugin). ``None`` adds
            nothing.
        extensions: extension factories to offer, in preference order
            (``[]`` with ``compression=None``: offer none).
        open_timeout: seconds for TCP connect + TLS + opening handshake.
        ping_interval: seconds between keepalive pings (``None`` disables).
        ping_timeout: seconds to wait for a keepalive pong before failing
            the connection with 1011 (``None`` disables).
        close_timeout: seconds to wait for the closing handshake and the
            TCP close before aborting.
        max_size: largest message accepted (1009 beyond), ``None`` for no limit.
        max_queue: received messages buffered before reading pauses.
        write_limit: write buffer high-water mark; ``send`` waits above it.
        max_fragment_size: split sent messages into frames of this size.
        limits: :class:`~wskit.http11.HTTPLimits` for the HTTP response.
        logger: a logger (or its name) for this connection's debug lines.
        plugins: extra plugins for the core.
        ssl: an :class:`ssl.SSLContext` (``wss://`` without it uses the default context).
        server_hostname: the TLS server name (default: the URI's host).
        sock: an already connected socket to use.
        plugin_manager: the :class:`~wskit.plugin.PluginManager` of the core
            (default: the shared one).
        spec: the connection state-machine spec (a path or a loaded
            :class:`~wskit.statemachine.StateSpec`; default: the shipped one).
        config: a loaded :class:`wskit.config.Config`: every key it sets
            applies unless the same option is passed in the call (an
            explicit argument wins even when equal to its default);
            ``client.uri`` is used when ``uri`` is not given.
        **kwargs: passed to :meth:`asyncio.loop.create_connection`.

    Raises:
        InvalidURI: ``uri`` is not a WebSocket URI.
        InvalidHandshake: the server refused the upgrade (``.response`` holds
            its answer, e.g. status 401 or 403).
        TimeoutError: ``open_timeout`` elapsed.
        OSError: the TCP connection failed.
    """

    @with_config("asyncio_client", passthrough=loop_keywords(
        "create_connection", "create_unix_connection", internal=["_unix_path"]))
    def __init__(
        self,
        uri: str | None = None,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        extra_headers: Any = None,
        user_agent: str | None = USER_AGENT,
        compression: str | None = "deflate",
        extensions: Sequence[Any] | None = None,
        open_timeout: float | None = OPEN_TIMEOUT,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float | None = PING_TIMEOUT,
        close_timeout: float | None = CLOSE_TIMEOUT,
        max_size: int | None = MAX_SIZE,
        max_queue: int | None = MAX_QUEUE,
        write_limit: int = WRITE_LIMIT,
        max_fragment_size: int | None = None,
        limits: HTTPLimits | None = None,
        logger: LoggerLike | str | None = None,
        plugins: Sequence[object] | None = None,
        plugin_manager: PluginManager | None = None,
        spec: str | os.PathLike[str] | StateSpec | None = None,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
        config: Config | None = None,
        **kwargs: Any,
    ) -> None:
        if uri is None:
            raise TypeError("connect() needs a URI (or client.uri in the configuration file)")
        self._uri = uri
        self._wsuri = parse_uri(uri)
        # Built now: a bad ``compression`` fails here, not at connection time.
        manager = resolve_manager(plugins, plugin_manager)
        self._options = ConnectionOptions.build(
            extensions=io_extensions(compression, extensions, "client", manager), subprotocols=subprotocols,
            max_size=max_size, max_fragment_size=max_fragment_size, limits=limits,
            plugin_manager=manager, spec=spec, open_timeout=open_timeout, close_timeout=close_timeout,
            ping_interval=ping_interval, ping_timeout=ping_timeout, max_queue=max_queue, write_limit=write_limit)
        check_options(max_queue=max_queue, write_limit=write_limit, ping_interval=ping_interval,
                      ping_timeout=ping_timeout, close_timeout=close_timeout)
        self._origin = origin
        self._extra_headers = extra_headers
        self._user_agent = user_agent
        self._logger = logger
        if self._wsuri.secure and ssl is None:
            ssl = ssl_module.create_default_context()
        elif not self._wsuri.secure and ssl is not None:
            raise ValueError(f"ssl= was given for {uri!r}: use a wss:// URI for TLS")
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._sock = sock
        self._kwargs = kwargs
        self._unix_path: str | None = kwargs.pop("_unix_path", None)
        self.connection: ClientConnection | None = None

    def _make(self) -> ClientConnection:
        conn_id = uuid.uuid4()
        logger = make_logger(self._logger, "wskit.client", conn_id)
        protocol = ClientProtocol(
            self._uri, origin=self._origin, extra_headers=self._extra_headers, user_agent=self._user_agent,
            **self._options.protocol_kwargs(logger),
        )
        return ClientConnection(protocol, conn_id=conn_id, logger=logger, **self._options.connection_kwargs())

    async def _open(self, conn: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        kwargs = dict(self._kwargs)
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
            kwargs["server_hostname"] = self._server_hostname or self._wsuri.host
        if self._unix_path is not None or (self._sock is not None and self._sock.family == socket.AF_UNIX):
            await loop.create_unix_connection(lambda: conn, self._unix_path, sock=self._sock, **kwargs)
        elif self._sock is not None:
            await loop.create_connection(lambda: conn, sock=self._sock, **kwargs)
        else:
            await loop.create_connection(lambda: conn, self._wsuri.host, self._wsuri.port, **kwargs)
        await conn._handshake

    async def _connect(self) -> ClientConnection:
        conn = self._make()
        try:
            await asyncio.wait_for(self._open(conn), self._options.open_timeout)
        except asyncio.TimeoutError:
            _abort(conn)
            raise TimeoutError(f"timed out after {self._options.open_timeout} s opening {self._uri}") from None
        except BaseException:
            _abort(conn)
            raise
        self.connection = conn
        return conn

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._connect().__await__()

    async def __aenter__(self) -> ClientConnection:
        return await self._connect()

    async def __aexit__(self, *exc_info: object) -> None:
        if self.connection is not None:
            await self.connection.close()


def _abort(conn: ClientConnection) -> None:
    if conn.transport is not None and not conn.transport.is_closing():
        conn.transport.abort()


def unix_connect(path: str | None = None, uri: str | None = None, **kwargs: Any) -> connect:
    """Open a WebSocket client connection over a Unix socket.

    Args:
        path: the socket's file system path (or pass ``sock=``).
        uri: the URI sent in the handshake (default: ``client.uri`` of
            ``config=`` if it sets one, else ``ws://localhost/``, or
            ``wss://localhost/`` with ``ssl=``).
        **kwargs: the options of :func:`connect`.
    """
    config = kwargs.get("config")
    if uri is None and config is not None and config.is_set("client.uri"):
        uri = config.get("client.uri")
    if uri is None:
        uri = "wss://localhost/" if kwargs.get("ssl") is not None else "ws://localhost/"
    return connect(uri, _unix_path=path, **kwargs)
