"""asyncio WebSocket client: :func:`connect` and :func:`unix_connect`."""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
import uuid
from collections.abc import Generator, Sequence
from typing import Any

from ..events import Request, Response
from ..exceptions import ConnectionClosedError, InvalidHandshake, ProtocolError
from ..handshake import parse_uri
from ..http11 import HTTPLimits
from ..protocol import ClientProtocol
from .connection import Connection, LoggerLike, make_logger

__all__ = ["ClientConnection", "connect", "unix_connect"]

#: Defaults of the options shared by :func:`connect` and :func:`~wskit.asyncio.serve`.
COMMON_DEFAULTS: dict[str, Any] = {
    "max_size": 2**20,
    "max_queue": 16,
    "write_limit": 32768,
    "open_timeout": 10,
    "close_timeout": 10,
    "ping_interval": 20,
    "ping_timeout": 20,
    "compression": "deflate",
    "max_fragment_size": None,
}


def extensions_for(compression: str | None, extensions: Sequence[Any] | None, server: bool) -> list[Any] | None:
    """Map the ``compression`` option to extension factories.

    Args:
        compression: ``"deflate"`` (permessage-deflate, RFC 7692) or ``None``.
        extensions: explicit factories; they win over ``compression``.
        server: build server factories rather than client ones.

    Raises:
        ValueError: for an unknown ``compression`` value.
    """
    if extensions is not None:
        return list(extensions)
    if compression is None:
        return []
    if compression != "deflate":
        raise ValueError(f"compression must be 'deflate' or None, got {compression!r}")
    try:
        from ..extensions import permessage_deflate as pmd
    except ImportError:  # pragma: no cover - the extension ships with wskit
        return None
    return [pmd.ServerPerMessageDeflateFactory() if server else pmd.ClientPerMessageDeflateFactory()]


def apply_config(config: Any, kind: str, explicit: dict[str, Any]) -> dict[str, Any]:
    """Merge a loaded configuration under the explicitly passed options.

    An option counts as explicit when its value differs from the default.

    Args:
        config: a :class:`wskit.config.Config`, or ``None``.
        kind: ``"asyncio_client"`` or ``"asyncio_server"``.
        explicit: the options given by the caller.
    """
    if config is None:
        return explicit
    from .. import config as config_module  # type: ignore[attr-defined, unused-ignore]

    merged: dict[str, Any] = config_module.merge_options(config, kind, explicit)
    return merged


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
        compression: ``"deflate"`` to offer permessage-deflate, ``None`` for none.
        extensions: extension factories (override ``compression``).
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
        config: a :class:`wskit.config.Config` providing defaults.
        **kwargs: passed to :meth:`asyncio.loop.create_connection`.

    Raises:
        InvalidURI: ``uri`` is not a WebSocket URI.
        InvalidHandshake: the server refused the upgrade (``.response`` holds
            its answer, e.g. status 401 or 403).
        TimeoutError: ``open_timeout`` elapsed.
        OSError: the TCP connection failed.
    """

    def __init__(
        self,
        uri: str,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        extra_headers: Any = None,
        user_agent: str | None = "wskit/0.1",
        compression: str | None = "deflate",
        extensions: Sequence[Any] | None = None,
        open_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_size: int | None = 2**20,
        max_queue: int | None = 16,
        write_limit: int = 32768,
        max_fragment_size: int | None = None,
        limits: HTTPLimits | None = None,
        logger: LoggerLike | str | None = None,
        plugins: Sequence[object] | None = None,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
        config: Any = None,
        **kwargs: Any,
    ) -> None:
        options: dict[str, Any] = {
            "max_size": max_size, "max_queue": max_queue, "write_limit": write_limit,
            "open_timeout": open_timeout, "close_timeout": close_timeout, "ping_interval": ping_interval,
            "ping_timeout": ping_timeout, "compression": compression, "max_fragment_size": max_fragment_size,
        }
        explicit = {k: v for k, v in options.items() if v != COMMON_DEFAULTS[k]}
        others: dict[str, Any] = {"origin": origin, "subprotocols": subprotocols, "extensions": extensions,
                                  "limits": limits,
                  "ssl": ssl}
        explicit.update((k, v) for k, v in others.items() if v is not None)
        merged = {**COMMON_DEFAULTS, **others, "plugin_manager": None,
                  **apply_config(config, "asyncio_client", explicit)}
        ssl = merged["ssl"]
        self._uri = uri
        self._wsuri = parse_uri(uri)
        self._opts = merged
        self._origin = merged["origin"]
        self._subprotocols = merged["subprotocols"]
        self._extra_headers = extra_headers
        self._user_agent = user_agent
        self._extensions = merged["extensions"]
        self._limits = merged["limits"]
        self._logger = logger
        self._plugins = plugins
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
        o = self._opts
        conn_id = uuid.uuid4()
        logger = make_logger(self._logger, "wskit.client", conn_id)
        protocol = ClientProtocol(
            self._uri, logger=logger, max_size=o["max_size"],
            extensions=extensions_for(o["compression"], self._extensions, server=False),
            subprotocols=self._subprotocols, origin=self._origin, extra_headers=self._extra_headers,
            max_fragment_size=o["max_fragment_size"], limits=self._limits, user_agent=self._user_agent,
            plugins=self._plugins, plugin_manager=o["plugin_manager"],
        )
        return ClientConnection(
            protocol, conn_id=conn_id, logger=logger, max_queue=o["max_queue"], write_limit=o["write_limit"],
            ping_interval=o["ping_interval"], ping_timeout=o["ping_timeout"], close_timeout=o["close_timeout"],
        )

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
            await asyncio.wait_for(self._open(conn), self._opts["open_timeout"])
        except asyncio.TimeoutError:
            _abort(conn)
            raise TimeoutError(f"timed out after {self._opts['open_timeout']} s opening {self._uri}") from None
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
        uri: the URI sent in the handshake (default ``ws://localhost/``, or
            ``wss://localhost/`` with ``ssl=``).
        **kwargs: the options of :func:`connect`.
    """
    if uri is None:
        uri = "wss://localhost/" if kwargs.get("ssl") is not None else "ws://localhost/"
    return connect(uri, _unix_path=path, **kwargs)
