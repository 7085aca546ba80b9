"""asyncio WebSocket client: :func:`connect` and :func:`unix_connect`."""

from __future__ import annotations

import asyncio
import functools
import inspect
import socket
import ssl as ssl_module
import uuid
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ..events import Request, Response
from ..exceptions import ConnectionClosedError, InvalidHandshake, ProtocolError
from ..handshake import parse_uri
from ..http11 import HTTPLimits
from ..protocol import ClientProtocol
from .connection import Connection, LoggerLike, make_logger

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config
    from ..plugin import PluginManager

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["ClientConnection", "connect", "unix_connect"]



def extensions_for(compression: str | None, extensions: Sequence[Any] | None, server: bool) -> list[Any] | None:
    """Map the ``compression`` option to the core's ``extensions`` argument.

    Args:
        compression: ``"deflate"`` (permessage-deflate, RFC 7692) or ``None``.
        extensions: explicit factories; they win over ``compression``.
        server: for a server (unused: the plugins know their side).

    Returns:
        The factories, or ``None`` for "what the plugins provide"
        (permessage-deflate with its default settings, unless the plugin
        manager leaves the ``permessage-deflate`` plugin out).

    Raises:
        ValueError: for an unknown ``compression`` value.
    """
    if extensions is not None:
        return list(extensions)
    if compression is None:
        return []
    if compression != "deflate":
        raise ValueError(f"compression must be 'deflate' or None, got {compression!r}")
    return None


_LOCATION_IN_CODE = frozenset({"sock", "unix", "_unix", "_unix_path"})


def with_config(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a consumer (``connect.__init__``, ``serve.__init__``) so that it takes ``config=``.

    The keyword arguments actually passed in the call, and the parameters
    given positionally, are explicit and win over the file, even when equal
    to their default; every other key the file sets fills in (see
    :func:`wskit.config.merge_options`). Then:

    * the file's ``compression`` section is the complete extension list
      (``compression`` is set to ``None`` so the layer adds nothing), unless
      ``compression`` or ``extensions`` was given in code;
    * on clients, the file's ``tls`` section applies to ``wss://`` URIs only;
    * for servers, a location given in code (``host``/``port``, or a socket
      or Unix path) wins over the file's; a file's ``server.unix`` wins over
      the file's ``host``/``port``; otherwise ``host`` and ``port`` not given
      in code are the configuration's (default ``127.0.0.1:8765``).

    Args:
        kind: ``"asyncio_client"`` or ``"asyncio_server"`` (a
            :data:`wskit.config.KINDS` value).
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        params = inspect.signature(func).parameters.values()
        positional = [p.name for p in params
                      if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            config = kwargs.pop("config", None)
            if config is None:
                return func(*args, **kwargs)
            merged = resolve_config(config, kind, dict(zip(positional, args)), kwargs)
            return func(*args, **merged)

        return wrapper

    return decorate


def resolve_config(config: Any, kind: str, positional: dict[str, Any], keywords: dict[str, Any]) -> dict[str, Any]:
    """Return the keyword arguments to call a consumer with: ``keywords`` plus what ``config`` adds.

    Args:
        config: a :class:`wskit.config.Config`.
        kind: the consumer kind.
        positional: the parameters given positionally, by name (explicit,
            not returned).
        keywords: the keyword arguments given (explicit, returned as is).

    Raises:
        TypeError: ``config`` is not a :class:`wskit.config.Config`.
    """
    from ..config import Config, merge_options

    if not isinstance(config, Config):
        raise TypeError(f"config must be a wskit.config.Config (from wskit.config.load), "
                        f"got {type(config).__name__}")
    given = {**positional, **keywords}
    merged = merge_options(config, kind, given)
    for name in positional:
        merged.pop(name, None)
    if "extensions" in merged and "extensions" not in given and "compression" not in given:
        merged["compression"] = None  # the file's factories are the complete list
    uri = merged.get("uri", positional.get("uri"))
    if "ssl" in merged and "ssl" not in given and isinstance(uri, str) and not uri.lower().startswith("wss:"):
        del merged["ssl"]  # the file's TLS settings apply to wss:// URIs only
    if kind.endswith("_server"):
        in_code = any(given.get(k) is not None for k in _LOCATION_IN_CODE)
        if merged.get("unix") is None and "unix" not in given:
            merged.pop("unix", None)  # `server.unix: null` in the file: TCP
        from_file = [k for k in ("host", "port", "unix") if k in merged and k not in given]
        if in_code:
            drop = from_file  # a socket or Unix path given in code: the file's address is moot
        elif "host" in given or "port" in given:
            drop = [k for k in from_file if k == "unix"]
        elif merged.get("unix") is not None:
            drop = [k for k in from_file if k != "unix"]
        else:
            drop = []
        for key in drop:
            merged.pop(key, None)
        if (in_code or merged.get("unix") is not None) and "reuse_port" not in given:
            merged.pop("reuse_port", None)  # the file's SO_REUSEPORT is for the TCP socket it describes
        if merged.get("unix") is None and not in_code:
            # Listening on TCP: the configuration's address, unless given in code.
            for key in ("host", "port"):
                if key not in given:
                    merged.setdefault(key, config.get(f"server.{key}"))
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
        plugin_manager: the :class:`~wskit.plugin.PluginManager` of the core
            (default: the shared one).
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

    @with_config("asyncio_client")
    def __init__(
        self,
        uri: str | None = None,
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
        plugin_manager: PluginManager | None = None,
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
        self._opts: dict[str, Any] = {
            "max_size": max_size, "max_queue": max_queue, "write_limit": write_limit,
            "open_timeout": open_timeout, "close_timeout": close_timeout, "ping_interval": ping_interval,
            "ping_timeout": ping_timeout, "max_fragment_size": max_fragment_size,
            "plugin_manager": plugin_manager,
        }
        self._origin = origin
        self._subprotocols = subprotocols
        self._extra_headers = extra_headers
        self._user_agent = user_agent
        # Build the factories now: a bad ``compression`` fails here, not at connection time.
        self._extensions = extensions_for(compression, extensions, server=False)
        self._limits = limits
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
            extensions=None if self._extensions is None else list(self._extensions),
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
